# Runs on the systemd + Docker VM host (scripts/vm/systemd-host.sh run), as a
# oneshot unit after docker.service, with /root/in holding the static
# busybox, pidwarden-exporter, pidwarden-remediator and pidwarden-vm-helper.
# Runs both daemons as on a real host (Docker's socket, systemd cgroup
# driver, cgroup v2) against a real container with three copies of one
# command, asks the remediator to kill the surplus copies, then to restart
# the container, through its webhook, and prints what the kernel and the
# daemons showed; the test on the
# host (tests/tests/systemd_docker_host.rs) judges it.
set -u
IN=/root/in
H=$IN/pidwarden-vm-helper
echo "=== info cgroupfs $(stat -fc %T /sys/fs/cgroup)"
echo "=== info docker $(docker info --format '{{.CgroupDriver}} cgroup-v{{.CgroupVersion}}' 2>&1)"
docker rm -f web >/dev/null 2>&1

# An image of the static busybox (no registry).
r=$(mktemp -d)
mkdir -p $r/bin $r/tmp
cp $IN/busybox $r/bin/busybox
for a in $($r/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox $r/bin/$a; done
tar -C $r -c . | docker import -c 'CMD ["/bin/sh"]' - pidwarden-vm-bb >/dev/null
# Three copies of `sh -c "sleep 1000; true"` (each a tree: sh and its sleep)
# beside one other sleep; a process with the same command outside it.
docker run -d --name web --network none pidwarden-vm-bb \
    sh -c 'for i in 1 2 3; do sh -c "sleep 1000; true" & done; sleep 1001 & wait' >/tmp/id
id=$(cat /tmp/id)
echo "=== info container $id $(docker inspect -f '{{.State.Pid}}' web)"
sh -c "sleep 1000; true" &
outside=$!
echo "=== info outside $outside"

echo pidwarden-vm-token >/root/token
$IN/pidwarden-exporter --listen 127.0.0.1:9917 2>/tmp/exporter.log &
$IN/pidwarden-remediator --listen 127.0.0.1:9918 --token-file /root/token --state-dir /root/state \
    --grace 2 --cooldown 0 --sample 0.5 2>/tmp/remediator.log &
# Until the exporter names the container and sees its copies.
i=0
until $H get http://127.0.0.1:9917/metrics 2>/dev/null | grep -q "pidwarden_container_duplicate_processes{.*name=\"web\".* 2$"; do
    i=$((i + 1))
    [ $i -lt 120 ] || { echo "=== info timeout waiting for the exporter"; break; }
    sleep 1
done
until $H get http://127.0.0.1:9918/healthz >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 240 ] || { echo "=== info timeout waiting for the remediator"; break; }; sleep 1
done
echo "=== metrics before"
$H get http://127.0.0.1:9917/metrics
echo "=== state before"
$H dump

now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
cat >/tmp/alert.json <<JSON
{"receiver":"pidwarden","status":"firing","alerts":[{"status":"firing",
 "labels":{"alertname":"PidwardenDuplicateProcesses","id":"$id","pidwarden_action":"kill-duplicates"},
 "annotations":{},"startsAt":"$now","endsAt":"0001-01-01T00:00:00Z",
 "generatorURL":"http://prometheus/graph","fingerprint":"0123456789abcdef"}],
 "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://alertmanager:9093",
 "version":"4","groupKey":"{}:{alertname=\"PidwardenDuplicateProcesses\"}","truncatedAlerts":0}
JSON
echo "=== webhook $($H post http://127.0.0.1:9918/api/v1/alerts pidwarden-vm-token /tmp/alert.json 2>&1 | tr '\n' ' ')"
i=0
until $H get 'http://127.0.0.1:9918/api/v1/actions?limit=10' pidwarden-vm-token 2>/dev/null | grep -q '"result": *"done"\|"result": *"failed"'; do
    i=$((i + 1)); [ $i -lt 120 ] || { echo "=== info timeout waiting for the action"; break; }; sleep 1
done
sleep 1
echo "=== actions"
$H get 'http://127.0.0.1:9918/api/v1/actions?limit=10' pidwarden-vm-token
echo
echo "=== info running $(docker inspect -f '{{.State.Running}} {{.State.Paused}}' web)"
echo "=== state after"
$H dump
echo "=== metrics after"
sleep 2
$H get http://127.0.0.1:9917/metrics
# restart through the same webhook: the container runs again, a new init.
echo "=== info before-restart $(docker inspect -f '{{.State.Pid}} {{.State.StartedAt}}' web)"
sed -e 's/kill-duplicates/restart/' -e 's/0123456789abcdef/fedcba9876543210/' /tmp/alert.json >/tmp/restart.json
echo "=== restart-webhook $($H post http://127.0.0.1:9918/api/v1/alerts pidwarden-vm-token /tmp/restart.json 2>&1 | tr '\n' ' ')"
i=0
until [ "$($H get 'http://127.0.0.1:9918/api/v1/actions?limit=10' pidwarden-vm-token 2>/dev/null | grep -o '"result": *"\(done\|failed\)"' | wc -l)" -ge 2 ]; do
    i=$((i + 1)); [ $i -lt 120 ] || { echo "=== info timeout waiting for the restart"; break; }; sleep 1
done
echo "=== info after-restart $(docker inspect -f '{{.State.Pid}} {{.State.StartedAt}}' web)"
echo "=== info running-after-restart $(docker inspect -f '{{.State.Running}} {{.State.Paused}}' web)"
echo "=== actions-after-restart"
$H get 'http://127.0.0.1:9918/api/v1/actions?limit=10' pidwarden-vm-token
echo
echo "=== log"
tail -n 20 /tmp/exporter.log /tmp/remediator.log
kill $outside
docker rm -f web >/dev/null 2>&1
echo "=== done"
