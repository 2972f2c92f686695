//! cgroup fixture trees laid out like real hosts (cgroup v2: Docker with the
//! cgroupfs and systemd drivers, Podman, Kubernetes with the systemd driver
//! on containerd and CRI-O and with the cgroupfs driver; cgroup v1 hybrid), with the limits on ancestors, read
//! through the public API.

use std::fs;
use std::path::{Path, PathBuf};

use pidwarden_shared::cgroup::{
    detect_layout, discover, discover_all, read_memory, read_pids, read_procs_recursive, Ambiguous,
    Container, Layout, MemoryStats, PidsStats, Runtime,
};
use pidwarden_shared::runtime::Kind;
use pidwarden_shared::{Error, Limit, Roots};

const ID_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const ID_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
const ID_C: &str = "fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13";
const POD_UID: &str = "8dbc5577-d0e2-4706-8787-57d52c03ddf2";

/// Builds a cgroup filesystem in a temporary directory, one control file at
/// a time, the way the kernel shows it.
struct Tree {
    dir: tempfile::TempDir,
    v2: bool,
}

const V2_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc\n";
const V1_UNLIMITED: &str = "9223372036854771712\n";

fn v2_memory_stat(anon: u64, inactive_file: u64, active_file: u64) -> String {
    let file = inactive_file + active_file;
    format!(
        "anon {anon}\nfile {file}\nkernel 1204224\nkernel_stack 98304\npagetables 397312\n\
         sec_pagetables 0\npercpu 3360\nsock 0\nvmalloc 8192\nshmem 0\nzswap 0\nzswapped 0\n\
         file_mapped 3964928\nfile_dirty 4096\nfile_writeback 0\nswapcached 0\nanon_thp 0\n\
         file_thp 0\nshmem_thp 0\ninactive_anon {anon}\nactive_anon 0\n\
         inactive_file {inactive_file}\nactive_file {active_file}\nunevictable 0\n\
         slab_reclaimable 417136\nslab_unreclaimable 245160\nslab 662296\n\
         workingset_refault_anon 0\nworkingset_refault_file 81\nworkingset_activate_anon 0\n\
         workingset_activate_file 0\nworkingset_restore_anon 0\nworkingset_restore_file 0\n\
         workingset_nodereclaim 0\npgscan 0\npgsteal 0\npgscan_kswapd 0\npgscan_direct 0\n\
         pgsteal_kswapd 0\npgsteal_direct 0\npgfault 35895\npgmajfault 47\npgrefill 0\n\
         pgactivate 2210\npgdeactivate 0\npglazyfree 0\npglazyfreed 0\nthp_fault_alloc 0\n\
         thp_collapse_alloc 0\n"
    )
}

fn v2_memory_events(max: u64, oom: u64, oom_kill: u64) -> String {
    format!("low 0\nhigh 0\nmax {max}\noom {oom}\noom_kill {oom_kill}\noom_group_kill 0\n")
}

fn v1_memory_stat(rss: u64, inactive_file: u64, hierarchical_limit: &str) -> String {
    // non-total_ figures are local to the cgroup and deliberately differ
    // from the hierarchical total_ ones
    format!(
        "cache 8192\nrss 4096\nrss_huge 0\nshmem 0\nmapped_file 0\ndirty 0\nwriteback 0\n\
         workingset_refault_anon 0\nworkingset_refault_file 0\nswap 0\nswapcached 0\n\
         pgpgin 10\npgpgout 5\npgfault 100\npgmajfault 0\ninactive_anon 0\nactive_anon 4096\n\
         inactive_file 4096\nactive_file 4096\nunevictable 0\n\
         hierarchical_memory_limit {}\nhierarchical_memsw_limit 9223372036854771712\n\
         total_cache {}\ntotal_rss {rss}\ntotal_rss_huge 0\ntotal_shmem 0\ntotal_mapped_file 0\n\
         total_dirty 0\ntotal_writeback 0\ntotal_workingset_refault_anon 0\n\
         total_workingset_refault_file 0\ntotal_swap 0\ntotal_swapcached 0\ntotal_pgpgin 10\n\
         total_pgpgout 5\ntotal_pgfault 100\ntotal_pgmajfault 0\ntotal_inactive_anon 0\n\
         total_active_anon {rss}\ntotal_inactive_file {inactive_file}\ntotal_active_file 0\n\
         total_unevictable 0\n",
        hierarchical_limit.trim(),
        inactive_file
    )
}

impl Tree {
    /// A pure cgroup v2 host: the unified tree at the root.
    fn v2() -> Tree {
        let t = Tree {
            dir: tempfile::tempdir().unwrap(),
            v2: true,
        };
        let r = t.root().to_path_buf();
        for (f, c) in [
            ("cgroup.controllers", V2_CONTROLLERS),
            ("cgroup.subtree_control", "cpu io memory pids\n"),
            ("cgroup.procs", "1\n2\n"),
            ("cgroup.max.depth", "max\n"),
            ("cgroup.stat", "nr_descendants 40\nnr_dying_descendants 0\n"),
            ("memory.stat", &v2_memory_stat(1 << 30, 1 << 29, 1 << 29)),
            (
                "memory.pressure",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            ),
        ] {
            fs::write(r.join(f), c).unwrap();
        }
        t
    }

    /// A cgroup v1 hybrid host: `pids`, `memory`, the named `systemd`
    /// hierarchy and a controller-less `unified` tree.
    fn hybrid() -> Tree {
        let t = Tree {
            dir: tempfile::tempdir().unwrap(),
            v2: false,
        };
        let r = t.root();
        for h in ["pids", "memory", "systemd", "cpu,cpuacct", "unified"] {
            fs::create_dir(r.join(h)).unwrap();
            fs::write(r.join(h).join("cgroup.procs"), "1\n2\n").unwrap();
        }
        fs::write(r.join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        fs::write(r.join("memory/memory.limit_in_bytes"), V1_UNLIMITED).unwrap();
        fs::write(r.join("memory/memory.usage_in_bytes"), "4096000000\n").unwrap();
        for h in ["pids", "memory", "systemd", "cpu,cpuacct"] {
            fs::write(r.join(h).join("cgroup.sane_behavior"), "0\n").unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", r.join("cpu")).unwrap();
        t
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn roots(&self) -> Roots {
        Roots::new("/proc", self.root())
    }

    fn layout(&self) -> Layout {
        detect_layout(&self.roots()).unwrap()
    }

    /// Creates the cgroup `rel` (and its missing ancestors) with the files a
    /// fresh cgroup has; on the hybrid tree `rel` starts with the hierarchy.
    fn cgroup(&self, rel: &str) -> &Tree {
        let mut p = self.root().to_path_buf();
        let mut first = !self.v2;
        for comp in rel.split('/') {
            p.push(comp);
            if first {
                first = false;
                continue;
            }
            if !p.exists() {
                fs::create_dir(&p).unwrap();
                self.fresh_files(&p, rel.split('/').next().unwrap());
            }
        }
        self
    }

    fn fresh_files(&self, dir: &Path, hierarchy: &str) {
        let v2: &[(&str, String)] = &[
            ("cgroup.controllers", V2_CONTROLLERS.into()),
            ("cgroup.subtree_control", "\n".into()),
            ("cgroup.type", "domain\n".into()),
            ("cgroup.procs", String::new()),
            ("cgroup.threads", String::new()),
            ("cgroup.events", "populated 0\nfrozen 0\n".into()),
            ("pids.current", "0\n".into()),
            ("pids.max", "max\n".into()),
            ("pids.peak", "0\n".into()),
            ("pids.events", "max 0\n".into()),
            ("memory.current", "0\n".into()),
            ("memory.max", "max\n".into()),
            ("memory.high", "max\n".into()),
            ("memory.low", "0\n".into()),
            ("memory.min", "0\n".into()),
            ("memory.swap.max", "max\n".into()),
            ("memory.stat", v2_memory_stat(0, 0, 0)),
            ("memory.events", v2_memory_events(0, 0, 0)),
        ];
        let v1_pids: &[(&str, String)] = &[
            ("cgroup.procs", String::new()),
            ("tasks", String::new()),
            ("notify_on_release", "0\n".into()),
            ("pids.current", "0\n".into()),
            ("pids.max", "max\n".into()),
            ("pids.peak", "0\n".into()),
            ("pids.events", "max 0\n".into()),
        ];
        let v1_memory: &[(&str, String)] = &[
            ("cgroup.procs", String::new()),
            ("tasks", String::new()),
            ("memory.usage_in_bytes", "0\n".into()),
            ("memory.limit_in_bytes", V1_UNLIMITED.into()),
            ("memory.max_usage_in_bytes", "0\n".into()),
            ("memory.use_hierarchy", "1\n".into()),
            ("memory.stat", v1_memory_stat(0, 0, V1_UNLIMITED)),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n".into(),
            ),
        ];
        let v1_plain: &[(&str, String)] = &[
            ("cgroup.procs", String::new()),
            ("tasks", String::new()),
            ("notify_on_release", "0\n".into()),
        ];
        let files = match (self.v2, hierarchy) {
            (true, _) => v2,
            (false, "pids") => v1_pids,
            (false, "memory") => v1_memory,
            _ => v1_plain,
        };
        for (f, c) in files {
            fs::write(dir.join(f), c).unwrap();
        }
    }

    /// Writes one control file of the cgroup `rel` (created when missing).
    fn set(&self, rel: &str, file: &str, content: impl AsRef<str>) -> &Tree {
        self.cgroup(rel);
        fs::write(self.root().join(rel).join(file), content.as_ref()).unwrap();
        self
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }
}

fn find<'a>(cs: &'a [Container], id: &str) -> &'a Container {
    cs.iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("container {id} not discovered in {cs:#?}"))
}

fn ids(cs: &[Container]) -> Vec<&str> {
    cs.iter().map(|c| c.id.as_str()).collect()
}

fn sorted(mut v: Vec<&'static str>) -> Vec<&'static str> {
    v.sort();
    v
}

#[test]
fn v2_docker_cgroupfs_driver() {
    let t = Tree::v2();
    let a = format!("docker/{ID_A}");
    let b = format!("docker/{ID_B}");
    t.cgroup("init.scope")
        .cgroup("system.slice/docker.service")
        .cgroup("system.slice/containerd.service")
        // the limits sit on the parent `docker` cgroup
        .set("docker", "pids.max", "50\n")
        .set("docker", "pids.current", "30\n")
        .set("docker", "memory.max", "1073741824\n")
        .set("docker", "memory.current", "400000000\n")
        .set(&a, "pids.current", "12\n")
        // it once had 31 tasks (pids.peak, 6.1 on) and shrank since
        .set(&a, "pids.peak", "31\n")
        .set(&a, "pids.events", "max 4\n")
        .set(&a, "cgroup.procs", "4242\n4250\n4251\n")
        .set(&a, "memory.current", "104857600\n")
        .set(
            &a,
            "memory.stat",
            v2_memory_stat(83886080, 20971520, 1048576),
        )
        .set(&a, "memory.events", v2_memory_events(9, 3, 2))
        // B has a tighter limit of its own: its headroom is its own
        .set(&b, "pids.max", "15\n")
        .set(&b, "pids.current", "12\n")
        .set(&b, "cgroup.procs", "5000\n")
        .set(&b, "memory.max", "2147483648\n")
        .set(&b, "memory.current", "5000\n")
        // more inactive file pages than usage (racy reads): floored at 0
        .set(&b, "memory.stat", v2_memory_stat(0, 8192, 0));

    let layout = t.layout();
    assert_eq!(layout.unified.as_deref(), Some(t.root()));
    assert!(layout.unified_controllers);
    let cs = discover(&layout).unwrap();
    assert_eq!(ids(&cs), sorted(vec![ID_A, ID_B]));

    let ca = find(&cs, ID_A);
    assert_eq!(ca.runtime, Runtime::Docker);
    assert_eq!(ca.pod_uid, None);
    assert_eq!(ca.rel_path, PathBuf::from(&a));
    assert_eq!(ca.dirs.pids, Some(t.path(&a)));
    assert_eq!(ca.dirs.memory, Some(t.path(&a)));
    assert_eq!(ca.dirs.procs, Some(t.path(&a)));
    assert!(!ca.dirs.memory_v1);

    assert_eq!(
        read_pids(&layout, ca).unwrap(),
        Some(PidsStats {
            current: 12,
            limit: Limit::Max(50),
            headroom: Some(20),
            limit_hits: 4,
            peak: Some(31),
        })
    );
    assert_eq!(
        read_memory(&layout, ca).unwrap(),
        Some(MemoryStats {
            usage: 104857600,
            working_set: 104857600 - 20971520,
            limit: Limit::Max(1073741824),
            oom_kills: 2,
        })
    );
    assert_eq!(
        read_procs_recursive(&t.path(&a)).unwrap(),
        vec![4242, 4250, 4251]
    );

    let cb = find(&cs, ID_B);
    assert_eq!(
        read_pids(&layout, cb).unwrap(),
        Some(PidsStats {
            current: 12,
            limit: Limit::Max(15),
            headroom: Some(3),
            limit_hits: 0,
            peak: Some(0),
        })
    );
    assert_eq!(
        read_memory(&layout, cb).unwrap(),
        Some(MemoryStats {
            usage: 5000,
            working_set: 0,
            limit: Limit::Max(1073741824),
            oom_kills: 0,
        })
    );
}

#[test]
fn v2_docker_systemd_driver() {
    let t = Tree::v2();
    let a = format!("system.slice/docker-{ID_A}.scope");
    t.cgroup("init.scope")
        .cgroup("system.slice/docker.service")
        .cgroup(&format!("system.slice/docker-{ID_A}.mount"))
        .cgroup("user.slice/user-1000.slice/session-3.scope")
        // TasksMax= and MemoryMax= on system.slice
        .set("system.slice", "pids.max", "4915\n")
        .set("system.slice", "pids.current", "4900\n")
        .set("system.slice", "memory.max", "8589934592\n")
        .set(&a, "pids.current", "21\n")
        .set(&a, "pids.events", "max 0\n")
        .set(&a, "cgroup.procs", "777\n")
        // nested cgroup inside the container (systemd in a container)
        .set(&format!("{a}/init.scope"), "cgroup.procs", "778\n779\n")
        .set(&a, "memory.current", "734003200\n")
        .set(
            &a,
            "memory.stat",
            v2_memory_stat(600000000, 100000000, 34003200),
        )
        .set(&a, "memory.events", v2_memory_events(0, 0, 0));

    let layout = t.layout();
    let cs = discover(&layout).unwrap();
    assert_eq!(ids(&cs), vec![ID_A]);
    let c = &cs[0];
    assert_eq!(c.runtime, Runtime::Docker);
    assert_eq!(c.rel_path, PathBuf::from(&a));
    assert_eq!(c.dirs.procs, Some(t.path(&a)));
    assert_eq!(
        read_pids(&layout, c).unwrap(),
        Some(PidsStats {
            current: 21,
            limit: Limit::Max(4915),
            headroom: Some(15),
            limit_hits: 0,
            peak: Some(0),
        })
    );
    assert_eq!(
        read_memory(&layout, c).unwrap(),
        Some(MemoryStats {
            usage: 734003200,
            working_set: 634003200,
            limit: Limit::Max(8589934592),
            oom_kills: 0,
        })
    );
    assert_eq!(
        read_procs_recursive(&t.path(&a)).unwrap(),
        vec![777, 778, 779]
    );
}

#[test]
fn v2_podman() {
    let t = Tree::v2();
    let a = format!("machine.slice/libpod-{ID_A}.scope");
    let conmon = format!("machine.slice/libpod-conmon-{ID_A}.scope");
    t.set("machine.slice", "pids.max", "64\n")
        .set("machine.slice", "pids.current", "60\n")
        .set("machine.slice", "memory.max", "268435456\n")
        .set(&conmon, "cgroup.procs", "3100\n")
        .set(&conmon, "pids.current", "1\n")
        .set(&a, "pids.current", "59\n")
        .set(&a, "pids.events", "max 17\n")
        .set(&a, "memory.current", "200000000\n")
        .set(
            &a,
            "memory.stat",
            v2_memory_stat(150000000, 30000000, 20000000),
        )
        .set(&a, "memory.events", v2_memory_events(120, 6, 5))
        // the processes live in the `container` child (no internal processes on v2)
        .set(
            &format!("{a}/container"),
            "cgroup.procs",
            "3101\n3105\n3106\n",
        )
        .set(&format!("{a}/container"), "pids.current", "59\n");

    let layout = t.layout();
    let cs = discover(&layout).unwrap();
    // neither conmon nor the nested `container` cgroup is a container
    assert_eq!(ids(&cs), vec![ID_A]);
    let c = &cs[0];
    assert_eq!(c.runtime, Runtime::Podman);
    assert_eq!(c.rel_path, PathBuf::from(&a));
    assert_eq!(c.dirs.pids, Some(t.path(&a)));
    assert_eq!(
        read_pids(&layout, c).unwrap(),
        Some(PidsStats {
            current: 59,
            limit: Limit::Max(64),
            headroom: Some(4),
            limit_hits: 17,
            peak: Some(0),
        })
    );
    assert_eq!(
        read_memory(&layout, c).unwrap(),
        Some(MemoryStats {
            usage: 200000000,
            working_set: 170000000,
            limit: Limit::Max(268435456),
            oom_kills: 5,
        })
    );
    let procs = c.dirs.procs.as_deref().unwrap();
    assert_eq!(read_procs_recursive(procs).unwrap(), vec![3101, 3105, 3106]);
}

#[test]
fn v2_kubepods_systemd_driver() {
    let t = Tree::v2();
    let uid_ = POD_UID.replace('-', "_");
    let qos = "kubepods.slice/kubepods-burstable.slice";
    let pod = format!("{qos}/kubepods-burstable-pod{uid_}.slice");
    let app = format!("{pod}/cri-containerd-{ID_A}.scope");
    let pause = format!("{pod}/cri-containerd-{ID_B}.scope");
    t.set("kubepods.slice", "memory.max", "16000000000\n")
        .set("kubepods.slice", "pids.max", "100000\n")
        .set("kubepods.slice", "pids.current", "900\n")
        .set(qos, "pids.current", "700\n")
        // pod-level limits
        .set(&pod, "pids.max", "1024\n")
        .set(&pod, "pids.current", "1000\n")
        .set(&pod, "memory.max", "536870912\n")
        .set(&app, "pids.current", "999\n")
        .set(&app, "pids.events", "max 31\n")
        .set(&app, "cgroup.procs", "9001\n9002\n")
        .set(&app, "memory.current", "500000000\n")
        .set(
            &app,
            "memory.stat",
            v2_memory_stat(480000000, 10000000, 10000000),
        )
        .set(&app, "memory.events", v2_memory_events(50, 2, 1))
        .set(&pause, "pids.current", "1\n")
        .set(&pause, "cgroup.procs", "8999\n")
        .set(&pause, "memory.current", "409600\n")
        .set(&pause, "memory.stat", v2_memory_stat(204800, 4096, 0))
        .cgroup("kubepods.slice/kubepods-besteffort.slice")
        .cgroup("system.slice/containerd.service")
        .cgroup("system.slice/kubelet.service");

    let layout = t.layout();
    let cs = discover(&layout).unwrap();
    assert_eq!(ids(&cs), sorted(vec![ID_A, ID_B]));
    let c = find(&cs, ID_A);
    assert_eq!(c.runtime, Runtime::Containerd);
    assert_eq!(c.pod_uid.as_deref(), Some(POD_UID));
    assert_eq!(c.rel_path, PathBuf::from(&app));
    assert_eq!(
        read_pids(&layout, c).unwrap(),
        Some(PidsStats {
            current: 999,
            limit: Limit::Max(1024),
            headroom: Some(24),
            limit_hits: 31,
            peak: Some(0),
        })
    );
    assert_eq!(
        read_memory(&layout, c).unwrap(),
        Some(MemoryStats {
            usage: 500000000,
            working_set: 490000000,
            limit: Limit::Max(536870912),
            oom_kills: 1,
        })
    );
    assert_eq!(
        read_procs_recursive(&t.path(&app)).unwrap(),
        vec![9001, 9002]
    );

    let p = find(&cs, ID_B);
    assert_eq!(p.pod_uid.as_deref(), Some(POD_UID));
    assert_eq!(
        read_pids(&layout, p).unwrap(),
        Some(PidsStats {
            current: 1,
            limit: Limit::Max(1024),
            headroom: Some(24),
            limit_hits: 0,
            peak: Some(0),
        })
    );
    assert_eq!(
        read_memory(&layout, p).unwrap(),
        Some(MemoryStats {
            usage: 409600,
            working_set: 405504,
            limit: Limit::Max(536870912),
            oom_kills: 0,
        })
    );
}

/// A CRI-O node, systemd cgroup driver (cgroup v2): a best-effort pod with
/// its pause (infra) container and one app container, each beside the
/// `crio-conmon-<id>.scope` of its monitor, which is not a container.
#[test]
fn v2_kubepods_systemd_driver_crio() {
    let t = Tree::v2();
    let uid_ = POD_UID.replace('-', "_");
    let qos = "kubepods.slice/kubepods-besteffort.slice";
    let pod = format!("{qos}/kubepods-besteffort-pod{uid_}.slice");
    let app = format!("{pod}/crio-{ID_A}.scope");
    let pause = format!("{pod}/crio-{ID_B}.scope");
    let conmon = format!("{pod}/crio-conmon-{ID_A}.scope");
    t.set("kubepods.slice", "pids.max", "100000\n")
        .set("kubepods.slice", "pids.current", "40\n")
        .set(qos, "pids.current", "12\n")
        // podPidsLimit on the pod slice
        .set(&pod, "pids.max", "16\n")
        .set(&pod, "pids.current", "12\n")
        .set(&app, "pids.current", "9\n")
        .set(&app, "pids.events", "max 4\n")
        .set(&app, "cgroup.procs", "7001\n7002\n7003\n")
        .set(&app, "memory.current", "1000000\n")
        .set(&app, "memory.stat", v2_memory_stat(900000, 50000, 0))
        .set(&pause, "pids.current", "1\n")
        .set(&pause, "cgroup.procs", "6999\n")
        .set(&conmon, "pids.current", "2\n")
        .set(&conmon, "cgroup.procs", "6998\n")
        .set(
            &format!("{pod}/crio-conmon-{ID_B}.scope"),
            "cgroup.procs",
            "6997\n",
        )
        .cgroup("system.slice/crio.service")
        .cgroup("system.slice/kubelet.service");

    let layout = t.layout();
    let cs = discover(&layout).unwrap();
    assert_eq!(
        ids(&cs),
        sorted(vec![ID_A, ID_B]),
        "conmon scopes are not containers"
    );
    for id in [ID_A, ID_B] {
        let c = find(&cs, id);
        assert_eq!(c.runtime, Runtime::Crio);
        assert_eq!(
            Kind::of(c.runtime),
            Kind::Cri,
            "named and restarted through CRI"
        );
        assert_eq!(c.pod_uid.as_deref(), Some(POD_UID));
    }
    let c = find(&cs, ID_A);
    assert_eq!(c.rel_path, PathBuf::from(&app));
    assert_eq!(
        read_pids(&layout, c).unwrap(),
        Some(PidsStats {
            current: 9,
            limit: Limit::Max(16),
            headroom: Some(4),
            limit_hits: 4,
            peak: Some(0),
        }),
        "the pod's limit and headroom, shared with the sandbox and conmon"
    );
    assert_eq!(
        read_procs_recursive(&t.path(&app)).unwrap(),
        vec![7001, 7002, 7003],
        "conmon's process is not the container's"
    );
    let p = find(&cs, ID_B);
    assert_eq!(
        read_pids(&layout, p)
            .unwrap()
            .map(|s| (s.current, s.headroom)),
        Some((1, Some(4)))
    );
}

#[test]
fn v2_kubepods_cgroupfs_driver() {
    let t = Tree::v2();
    let pod = format!("kubepods/besteffort/pod{POD_UID}");
    let c_rel = format!("{pod}/{ID_C}");
    let guaranteed = format!("kubepods/pod{POD_UID}/{ID_A}");
    t.set("kubepods", "pids.max", "30000\n")
        .set("kubepods", "pids.current", "29990\n")
        .set(&pod, "pids.max", "4096\n")
        .set(&pod, "pids.current", "100\n")
        .set(&pod, "memory.max", "1073741824\n")
        .set(&c_rel, "pids.current", "99\n")
        .set(&c_rel, "pids.events", "max 2\n")
        .set(&c_rel, "cgroup.procs", "12000\n")
        .set(&c_rel, "memory.current", "300000000\n")
        .set(
            &c_rel,
            "memory.stat",
            v2_memory_stat(250000000, 40000000, 0),
        )
        .set(&c_rel, "memory.events", v2_memory_events(0, 0, 0))
        .set(&guaranteed, "pids.current", "3\n")
        .set(&guaranteed, "cgroup.procs", "13000\n")
        .set(&guaranteed, "memory.current", "8192\n");

    let layout = t.layout();
    let cs = discover(&layout).unwrap();
    assert_eq!(ids(&cs), sorted(vec![ID_A, ID_C]));
    let c = find(&cs, ID_C);
    assert_eq!(c.runtime, Runtime::Containerd);
    assert_eq!(c.pod_uid.as_deref(), Some(POD_UID));
    assert_eq!(
        read_pids(&layout, c).unwrap(),
        Some(PidsStats {
            current: 99,
            // the pod allows 4096, but `kubepods` only 10 more
            limit: Limit::Max(4096),
            headroom: Some(10),
            limit_hits: 2,
            peak: Some(0),
        })
    );
    assert_eq!(
        read_memory(&layout, c).unwrap(),
        Some(MemoryStats {
            usage: 300000000,
            working_set: 260000000,
            limit: Limit::Max(1073741824),
            oom_kills: 0,
        })
    );
    let g = find(&cs, ID_A);
    assert_eq!(g.rel_path, PathBuf::from(&guaranteed));
    assert_eq!(
        read_pids(&layout, g).unwrap(),
        Some(PidsStats {
            current: 3,
            limit: Limit::Max(30000),
            headroom: Some(10),
            limit_hits: 0,
            peak: Some(0),
        })
    );
    assert_eq!(
        read_memory(&layout, g).unwrap().map(|m| m.limit),
        Some(Limit::Unlimited)
    );
}

#[test]
fn v2_unlimited_everywhere() {
    let t = Tree::v2();
    let a = format!("docker/{ID_A}");
    t.set(&a, "pids.current", "5\n")
        .set(&a, "memory.current", "1000\n");
    let layout = t.layout();
    let cs = discover(&layout).unwrap();
    assert_eq!(
        read_pids(&layout, &cs[0]).unwrap(),
        Some(PidsStats {
            current: 5,
            limit: Limit::Unlimited,
            headroom: None,
            limit_hits: 0,
            peak: Some(0),
        })
    );
    let m = read_memory(&layout, &cs[0]).unwrap().unwrap();
    assert_eq!(
        (m.usage, m.working_set, m.limit),
        (1000, 1000, Limit::Unlimited)
    );
}

#[test]
fn v2_ancestor_without_pids_controller_and_no_events_file() {
    let t = Tree::v2();
    let a = format!("system.slice/docker-{ID_A}.scope");
    t.set("system.slice", "pids.max", "100\n")
        .set("system.slice", "pids.current", "10\n")
        .set(&a, "pids.current", "7\n");
    // an intermediate level where the controller is not enabled has no pids files
    fs::remove_file(t.path("system.slice/pids.max")).unwrap();
    fs::remove_file(t.path(&a).join("pids.events")).unwrap();
    // a kernel before pids.peak (6.1): the peak is absent, not 0
    fs::remove_file(t.path(&a).join("pids.peak")).unwrap();
    let layout = t.layout();
    let cs = discover(&layout).unwrap();
    assert_eq!(
        read_pids(&layout, &cs[0]).unwrap(),
        Some(PidsStats {
            current: 7,
            limit: Limit::Unlimited,
            headroom: None,
            limit_hits: 0,
            peak: None,
        })
    );
}

#[test]
fn vanished_cgroup_reads_as_none() {
    let t = Tree::v2();
    let a = format!("docker/{ID_A}");
    t.set(&a, "pids.current", "5\n")
        .set(&format!("{a}/sub"), "cgroup.procs", "77\n");
    let layout = t.layout();
    let cs = discover(&layout).unwrap();
    assert_eq!(cs.len(), 1);
    fs::remove_dir_all(t.path(&a)).unwrap();
    assert_eq!(read_pids(&layout, &cs[0]).unwrap(), None);
    assert_eq!(read_memory(&layout, &cs[0]).unwrap(), None);
    assert_eq!(
        read_procs_recursive(&t.path(&a)).unwrap(),
        Vec::<i32>::new()
    );
    assert!(discover(&layout).unwrap().is_empty());
}

#[test]
fn errors_carry_the_path() {
    let t = Tree::v2();
    let a = format!("docker/{ID_A}");
    t.set(&a, "pids.current", "five\n")
        .set(&a, "memory.max", "lots\n");
    let layout = t.layout();
    let cs = discover(&layout).unwrap();
    match read_pids(&layout, &cs[0]) {
        Err(Error::Parse { path, .. }) => assert_eq!(path, t.path(&a).join("pids.current")),
        other => panic!("expected a parse error, got {other:?}"),
    }
    match read_memory(&layout, &cs[0]) {
        Err(Error::Parse { path, .. }) => assert_eq!(path, t.path(&a).join("memory.max")),
        other => panic!("expected a parse error, got {other:?}"),
    }
    // a read error (here: a directory where a file should be) names its path
    fs::remove_file(t.path(&a).join("pids.current")).unwrap();
    fs::create_dir(t.path(&a).join("pids.current")).unwrap();
    match read_pids(&layout, &cs[0]) {
        Err(Error::Read { path, .. }) => assert_eq!(path, t.path(&a).join("pids.current")),
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn v1_hybrid() {
    let t = Tree::hybrid();
    let a = format!("docker/{ID_A}");
    let b = format!("docker/{ID_B}");
    let two_gib = "2147483648\n";
    // pids: limit on the parent `docker`
    t.set("pids/docker", "pids.max", "40\n")
        .set("pids/docker", "pids.current", "33\n")
        .set(&format!("pids/{a}"), "pids.current", "25\n")
        .set(&format!("pids/{a}"), "pids.events", "max 6\n")
        .set(&format!("pids/{a}"), "cgroup.procs", "600\n601\n")
        .set(&format!("pids/{a}/nested"), "cgroup.procs", "602\n")
        .set(&format!("pids/{b}"), "pids.current", "8\n")
        .set(&format!("pids/{b}"), "cgroup.procs", "700\n")
        // memory: limit on the parent `docker`, seen again in hierarchical_memory_limit
        .set("memory/docker", "memory.limit_in_bytes", two_gib)
        .set(
            &format!("memory/{a}"),
            "memory.usage_in_bytes",
            "314572800\n",
        )
        .set(
            &format!("memory/{a}"),
            "memory.stat",
            v1_memory_stat(209715200, 52428800, two_gib),
        )
        .set(
            &format!("memory/{a}"),
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .set(&format!("memory/{a}"), "cgroup.procs", "600\n601\n")
        // B has its own, tighter memory limit
        .set(
            &format!("memory/{b}"),
            "memory.limit_in_bytes",
            "536870912\n",
        )
        .set(&format!("memory/{b}"), "memory.usage_in_bytes", "1048576\n")
        .set(
            &format!("memory/{b}"),
            "memory.stat",
            v1_memory_stat(1048576, 0, "536870912"),
        )
        // C exists in the memory hierarchy only; the kernel shows the
        // parent's limit in its hierarchical_memory_limit
        .set(&format!("memory/docker/{ID_C}"), "cgroup.procs", "800\n")
        .set(
            &format!("memory/docker/{ID_C}"),
            "memory.stat",
            v1_memory_stat(0, 0, two_gib),
        )
        .cgroup(&format!("systemd/{a}"))
        .cgroup(&format!("systemd/{b}"))
        .cgroup("systemd/system.slice/docker.service")
        .cgroup("cpu,cpuacct/docker");

    let layout = t.layout();
    assert_eq!(layout.v1_pids, Some(t.path("pids")));
    assert_eq!(layout.v1_memory, Some(t.path("memory")));
    assert_eq!(layout.v1_systemd, Some(t.path("systemd")));
    assert_eq!(layout.unified, Some(t.path("unified")));
    assert!(!layout.unified_controllers);

    let cs = discover(&layout).unwrap();
    assert_eq!(ids(&cs), sorted(vec![ID_A, ID_B, ID_C]));
    let ca = find(&cs, ID_A);
    assert_eq!(ca.runtime, Runtime::Docker);
    assert_eq!(ca.rel_path, PathBuf::from(&a));
    assert_eq!(ca.dirs.pids, Some(t.path(&format!("pids/{a}"))));
    assert_eq!(ca.dirs.memory, Some(t.path(&format!("memory/{a}"))));
    assert_eq!(ca.dirs.procs, Some(t.path(&format!("pids/{a}"))));
    assert!(ca.dirs.memory_v1);
    assert_eq!(
        read_pids(&layout, ca).unwrap(),
        Some(PidsStats {
            current: 25,
            limit: Limit::Max(40),
            headroom: Some(7),
            limit_hits: 6,
            peak: Some(0),
        })
    );
    assert_eq!(
        read_memory(&layout, ca).unwrap(),
        Some(MemoryStats {
            usage: 314572800,
            working_set: 314572800 - 52428800,
            limit: Limit::Max(2147483648),
            oom_kills: 3,
        })
    );
    assert_eq!(
        read_procs_recursive(ca.dirs.procs.as_deref().unwrap()).unwrap(),
        vec![600, 601, 602]
    );

    let cb = find(&cs, ID_B);
    assert_eq!(
        read_pids(&layout, cb).unwrap(),
        Some(PidsStats {
            current: 8,
            limit: Limit::Max(40),
            headroom: Some(7),
            limit_hits: 0,
            peak: Some(0),
        })
    );
    assert_eq!(
        read_memory(&layout, cb).unwrap(),
        Some(MemoryStats {
            usage: 1048576,
            working_set: 1048576,
            limit: Limit::Max(536870912),
            oom_kills: 0,
        })
    );

    let cc = find(&cs, ID_C);
    assert_eq!(cc.dirs.pids, None);
    assert_eq!(
        cc.dirs.memory,
        Some(t.path(&format!("memory/docker/{ID_C}")))
    );
    assert_eq!(cc.dirs.procs, cc.dirs.memory);
    assert!(cc.dirs.memory_v1);
    assert_eq!(read_pids(&layout, cc).unwrap(), None);
    assert_eq!(
        read_memory(&layout, cc).unwrap().map(|m| m.limit),
        Some(Limit::Max(2147483648))
    );
    assert_eq!(
        read_procs_recursive(cc.dirs.procs.as_deref().unwrap()).unwrap(),
        vec![800]
    );
}

#[test]
fn v1_systemd_hierarchy_only() {
    let t = Tree::hybrid();
    fs::remove_dir_all(t.path("pids")).unwrap();
    fs::remove_dir_all(t.path("memory")).unwrap();
    let a = format!("system.slice/docker-{ID_A}.scope");
    t.set(&format!("systemd/{a}"), "cgroup.procs", "42\n")
        .cgroup("systemd/system.slice/docker.service");
    let layout = t.layout();
    assert_eq!(
        (layout.v1_pids.clone(), layout.v1_memory.clone()),
        (None, None)
    );
    let cs = discover(&layout).unwrap();
    assert_eq!(ids(&cs), vec![ID_A]);
    assert_eq!(cs[0].dirs.procs, Some(t.path(&format!("systemd/{a}"))));
    assert_eq!(cs[0].dirs.pids, None);
    assert_eq!(cs[0].dirs.memory, None);
    assert_eq!(read_pids(&layout, &cs[0]).unwrap(), None);
    assert_eq!(read_memory(&layout, &cs[0]).unwrap(), None);
    assert_eq!(
        read_procs_recursive(cs[0].dirs.procs.as_deref().unwrap()).unwrap(),
        vec![42]
    );
}

#[test]
fn hierarchy_root_limits_are_not_ancestors() {
    // the kernel has no limit files at a hierarchy root; should a tree carry
    // some, they are outside the walk "up to, excluding, the root"
    let t = Tree::v2();
    let a = format!("docker/{ID_A}");
    t.set(&a, "pids.current", "5\n")
        .set(&a, "memory.current", "1000\n");
    fs::write(t.root().join("pids.max"), "1\n").unwrap();
    fs::write(t.root().join("pids.current"), "500\n").unwrap();
    fs::write(t.root().join("memory.max"), "10\n").unwrap();
    let layout = t.layout();
    let cs = discover(&layout).unwrap();
    let p = read_pids(&layout, &cs[0]).unwrap().unwrap();
    assert_eq!((p.limit, p.headroom), (Limit::Unlimited, None));
    let m = read_memory(&layout, &cs[0]).unwrap().unwrap();
    assert_eq!(m.limit, Limit::Unlimited);

    let h = Tree::hybrid();
    h.set(&format!("pids/{a}"), "pids.current", "5\n").set(
        &format!("memory/{a}"),
        "memory.usage_in_bytes",
        "1000\n",
    );
    fs::write(h.path("pids/pids.max"), "1\n").unwrap();
    fs::write(h.path("memory/memory.limit_in_bytes"), "10\n").unwrap();
    let layout = h.layout();
    let cs = discover(&layout).unwrap();
    let p = read_pids(&layout, &cs[0]).unwrap().unwrap();
    assert_eq!((p.limit, p.headroom), (Limit::Unlimited, None));
    let m = read_memory(&layout, &cs[0]).unwrap().unwrap();
    assert_eq!(m.limit, Limit::Unlimited);
}

/// Every v2 layout a runtime makes, each holding its own container, beside
/// cgroups that borrow those ids at parents no runtime uses (a user's
/// delegated subtree, a stray `mkdir`), with other task counts: only the
/// runtimes' cgroups are containers, and their figures are the ones read.
#[test]
fn v2_ids_borrowed_at_other_parents_are_not_containers() {
    let t = Tree::v2();
    let uid_ = POD_UID.replace('-', "_");
    let ids: Vec<String> = (0..10)
        .map(|i| format!("{:x}", 0xa0 + i).repeat(32))
        .collect();
    let real: Vec<(String, Runtime, Option<&str>)> = vec![
        (format!("docker/{}", ids[0]), Runtime::Docker, None),
        (format!("system.slice/docker-{}.scope", ids[1]), Runtime::Docker, None),
        (format!("machine.slice/libpod-{}.scope", ids[2]), Runtime::Podman, None),
        (format!("libpod_parent/libpod-{}", ids[3]), Runtime::Podman, None),
        (
            format!("kubepods/besteffort/pod{POD_UID}/{}", ids[4]),
            Runtime::Containerd,
            Some(POD_UID),
        ),
        (
            format!("kubepods/burstable/pod{POD_UID}/crio-{}.scope", ids[5]),
            Runtime::Crio,
            Some(POD_UID),
        ),
        (
            format!("kubepods/pod{POD_UID}/{}", ids[6]),
            Runtime::Containerd,
            Some(POD_UID),
        ),
        (
            format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{}.scope",
                ids[7]
            ),
            Runtime::Containerd,
            Some(POD_UID),
        ),
        (
            format!("kubepods.slice/kubepods-pod{uid_}.slice/crio-{}.scope", ids[8]),
            Runtime::Crio,
            Some(POD_UID),
        ),
        (
            format!(
                "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{uid_}.slice/cri-containerd-{}.scope",
                ids[9]
            ),
            Runtime::Containerd,
            Some(POD_UID),
        ),
    ];
    let delegated = "user.slice/user-1000.slice/user@1000.service";
    for (i, (rel, _, _)) in real.iter().enumerate() {
        t.set(rel, "pids.current", "3\n");
        let leaf = rel.rsplit('/').next().unwrap();
        let parent = &rel[..rel.len() - leaf.len() - 1];
        // the same names below a user's delegated subtree and a stray directory
        for stray in [
            format!("{delegated}/{rel}"),
            format!("pidwarden-test-x/{rel}"),
        ] {
            t.set(&stray, "pids.current", "10\n");
        }
        // a runtime's own name at another runtime's parent, or none
        let id = &ids[i];
        for stray in [
            format!("{delegated}/docker-{id}.scope"),
            format!("system.slice/foo.service/docker-{id}.scope"),
            format!("{parent}/x/docker-{id}.scope"),
            format!("machine.slice/libpod-conmon-{id}.scope"),
        ] {
            t.set(&stray, "pids.current", "10\n");
        }
    }
    let layout = t.layout();
    let found = discover_all(&layout).unwrap();
    assert_eq!(found.ambiguous, vec![]);
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(ids_of(&found.containers), want);
    for (i, (rel, runtime, pod)) in real.iter().enumerate() {
        let c = find(&found.containers, &ids[i]);
        assert_eq!(c.rel_path, PathBuf::from(rel), "{rel}");
        assert_eq!((c.runtime, c.pod_uid.as_deref()), (*runtime, *pod), "{rel}");
        assert_eq!(read_pids(&layout, c).unwrap().unwrap().current, 3, "{rel}");
    }
}

fn ids_of(cs: &[Container]) -> Vec<&str> {
    cs.iter().map(|c| c.id.as_str()).collect()
}

/// An id at two places a runtime uses (or at a configured parent beside a
/// default one) is refused: neither cgroup is a container, and the id is
/// listed with both paths. On v1, places differing between the pids and the
/// memory hierarchies are two places too.
#[test]
fn an_id_at_two_runtime_places_is_refused_on_v2_and_v1() {
    let t = Tree::v2();
    let one = format!("docker/{ID_A}");
    let two = format!("system.slice/docker-{ID_A}.scope");
    t.set(&one, "pids.current", "3\n")
        .set(&two, "pids.current", "10\n")
        .set(&format!("docker/{ID_B}"), "pids.current", "1\n");
    let found = discover_all(&t.layout()).unwrap();
    assert_eq!(ids_of(&found.containers), vec![ID_B]);
    assert_eq!(
        found.ambiguous,
        vec![Ambiguous {
            id: ID_A.into(),
            paths: vec![one.clone(), two.clone()],
        }]
    );
    assert_eq!(ids(&discover(&t.layout()).unwrap()), vec![ID_B]);

    // A configured parent counts as a runtime's place.
    let t = Tree::v2();
    let custom = format!("custom/{ID_A}");
    t.set(&one, "pids.current", "3\n")
        .set(&custom, "pids.current", "10\n");
    let plain = discover_all(&t.layout()).unwrap();
    assert_eq!(ids_of(&plain.containers), vec![ID_A]);
    assert_eq!(plain.containers[0].rel_path, PathBuf::from(&one));
    let layout = detect_layout(&t.roots().with_cgroup_parent("custom")).unwrap();
    let configured = discover_all(&layout).unwrap();
    assert!(configured.containers.is_empty());
    assert_eq!(configured.ambiguous[0].paths, vec![custom, one.clone()]);

    // v1: the pids and memory hierarchies disagree.
    let t = Tree::hybrid();
    t.cgroup(&format!("pids/{one}"))
        .cgroup(&format!("memory/{one}"))
        .cgroup(&format!("pids/docker/{ID_B}"))
        .cgroup(&format!("memory/{two}"));
    let found = discover_all(&t.layout()).unwrap();
    assert_eq!(ids_of(&found.containers), vec![ID_B]);
    assert_eq!(found.ambiguous.len(), 1);
    assert_eq!(found.ambiguous[0].paths, vec![one, two]);
}
