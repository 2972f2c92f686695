//! Docker helpers: the busybox test image and self-removing test containers.
//!
//! Everything goes through the `docker` command line, so the tests exercise
//! the same daemon (and `DOCKER_HOST`) a user would.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::util::{skip_docker, unique_name, SKIP_ENV};

/// The local image every test container runs: `FROM scratch` plus busybox.
pub const TEST_IMAGE: &str = "pidwarden-test-busybox:latest";

/// Host busybox binary copied into the image (Debian `busybox-static`).
const HOST_BUSYBOX: &str = "/bin/busybox";

/// The longest one `docker` command may take (`docker run` pulls nothing
/// here; a daemon that hangs must fail the test, not stall the suite).
pub const DOCKER_TIMEOUT_SECS: u32 = 120;

/// `docker` under `timeout(1)`: [`DOCKER_TIMEOUT_SECS`], then SIGKILL.
pub fn docker_command() -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", &DOCKER_TIMEOUT_SECS.to_string(), "docker"]);
    cmd
}

/// Runs `docker <args>` under `timeout(1)` ([`DOCKER_TIMEOUT_SECS`], then
/// SIGKILL) and returns its output (never panics on a non-zero exit; a
/// command that timed out exits 124).
pub fn docker<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    docker_command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the `docker` command: {e}"))
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    if !out.status.success() {
        panic!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// True when `docker info` succeeds (the CLI is installed and dockerd answers).
pub fn docker_available() -> bool {
    Command::new("timeout")
        .args(["--kill-after=5", "30", "docker", "info"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Gate for tests that need Docker.
///
/// Returns `false` (after printing `skipped: PIDWARDEN_SKIP_DOCKER=1`) when
/// `PIDWARDEN_SKIP_DOCKER=1`; the test should then return early. Otherwise
/// returns `true` when dockerd answers and panics with a clear message when it
/// does not.
pub fn require_docker() -> bool {
    if skip_docker() {
        return false;
    }
    if !docker_available() {
        panic!(
            "Docker is not reachable (`docker info` failed). Start dockerd \
             (scripts/test.sh does: dockerd --bridge=none --iptables=false --ip6tables=false) \
             or set {SKIP_ENV}=1 to skip the tests that need it"
        );
    }
    true
}

/// True when the image `tag` exists locally.
pub fn image_exists(tag: &str) -> bool {
    docker(["image", "inspect", "--format", "{{.Id}}", tag])
        .status
        .success()
}

/// Returns [`TEST_IMAGE`], building it first when it is missing.
///
/// Safe to call from parallel threads and from several test processes at once.
pub fn ensure_image() -> String {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| ensure_image_tagged(TEST_IMAGE));
    TEST_IMAGE.to_string()
}

/// Builds the busybox test image as `tag` unless it already exists.
///
/// Builds are serialised across processes by an exclusive `flock` on a file in
/// the temp directory; whoever gets the lock second finds the image present.
pub fn ensure_image_tagged(tag: &str) {
    if image_exists(tag) {
        return;
    }
    let lock_path = std::env::temp_dir().join("pidwarden-test-image.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", lock_path.display()));
    // SAFETY: flock on a valid, open descriptor; released when `lock` closes.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        rc,
        0,
        "flock {}: {}",
        lock_path.display(),
        std::io::Error::last_os_error()
    );
    if image_exists(tag) {
        return;
    }
    let ctx = std::env::temp_dir().join(unique_name());
    let result = std::panic::catch_unwind(|| build_image(&ctx, tag));
    let _ = fs::remove_dir_all(&ctx);
    drop(lock);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

fn build_image(ctx: &Path, tag: &str) {
    let busybox = Path::new(HOST_BUSYBOX);
    assert!(
        busybox.is_file(),
        "{HOST_BUSYBOX} missing: install the Debian package busybox-static"
    );
    let rootfs = ctx.join("rootfs");
    let bin = rootfs.join("bin");
    fs::create_dir_all(&bin).expect("creating image build dir");
    let tmp = rootfs.join("tmp");
    fs::create_dir_all(&tmp).expect("creating rootfs/tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).expect("chmod rootfs/tmp");
    fs::create_dir_all(rootfs.join("root")).expect("creating rootfs/root");
    fs::copy(busybox, bin.join("busybox")).expect("copying busybox");
    fs::set_permissions(bin.join("busybox"), fs::Permissions::from_mode(0o755))
        .expect("chmod busybox");

    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("running busybox --list");
    let applets = String::from_utf8_lossy(&list.stdout).to_string();
    let mut linked = 0;
    for applet in applets.lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        symlink("busybox", bin.join(applet))
            .unwrap_or_else(|e| panic!("symlink bin/{applet}: {e}"));
        linked += 1;
    }
    assert!(linked > 0, "busybox --list printed no applets");
    for needed in ["sh", "sleep", "cat", "ps"] {
        assert!(
            bin.join(needed).exists(),
            "busybox has no `{needed}` applet"
        );
    }
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nCMD [\"/bin/sh\"]\n",
    )
    .expect("writing Dockerfile");
    let out = docker_command()
        .args(["build", "-q", "-t", tag])
        .arg(ctx)
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker build`: {e}"));
    assert!(
        out.status.success(),
        "`docker build -t {tag}` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A detached test container, removed (`docker rm -f`) on drop.
#[derive(Debug)]
pub struct TestContainer {
    /// Full 64-hex container id.
    pub id: String,
    /// Container name, `pidwarden-test-<pid>-<n>-<salt>`.
    pub name: String,
}

impl TestContainer {
    /// `docker run -d --network none --name pidwarden-test-<unique> <opts> <image> <cmd>`
    /// with the image from [`ensure_image`]. Panics when the container does not start.
    pub fn run(opts: &[&str], cmd: &[&str]) -> TestContainer {
        let image = ensure_image();
        let name = unique_name();
        let mut args: Vec<&str> = vec!["run", "-d", "--network", "none", "--name", &name];
        args.extend_from_slice(opts);
        args.push(&image);
        args.extend_from_slice(cmd);
        let out = docker(&args);
        if !out.status.success() {
            // A failed start may still leave a created container behind.
            let _ = docker(["rm", "-f", "-v", name.as_str()]);
            panic!(
                "`docker {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let guard = TestContainer { id, name };
        assert!(
            guard.id.len() == 64 && guard.id.bytes().all(|b| b.is_ascii_hexdigit()),
            "docker run printed an unexpected id: {:?}",
            guard.id
        );
        guard
    }

    /// A container whose init runs three copies of `sh /w.sh "a b"` (three
    /// arguments) and three of `sh /w.sh a b` (four), each waiting on its
    /// `sleep 1000`: two duplicate groups whose command lines read the same
    /// once joined by spaces. 13 processes once everything started.
    pub fn run_lookalike_copies() -> TestContainer {
        TestContainer::run(
            &[],
            &[
                "sh",
                "-c",
                "echo 'sleep 1000' > /w.sh; \
                 for i in 1 2 3; do sh /w.sh 'a b' & sh /w.sh a b & done; wait",
            ],
        )
    }

    /// `docker inspect --format <format>` on this container, trimmed.
    pub fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, &self.id])
    }

    /// Host PID of the container's init process (`.State.Pid`); 0 when stopped.
    pub fn init_pid(&self) -> u32 {
        let s = self.inspect("{{.State.Pid}}");
        s.parse()
            .unwrap_or_else(|e| panic!("bad .State.Pid {s:?}: {e}"))
    }

    /// True while the container is running.
    pub fn is_running(&self) -> bool {
        self.inspect("{{.State.Running}}") == "true"
    }

    /// `docker exec <id> <cmd>`; the output is returned whatever the exit status.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", self.id.as_str()];
        args.extend_from_slice(cmd);
        docker(&args)
    }

    /// The container's labels (`.Config.Labels`).
    pub fn labels(&self) -> HashMap<String, String> {
        let json = self.inspect("{{json .Config.Labels}}");
        if json == "null" || json.is_empty() {
            return HashMap::new();
        }
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("bad labels JSON {json:?}: {e}"))
    }

    /// Start time as Docker reports it (`.State.StartedAt`, RFC 3339).
    pub fn started_at(&self) -> String {
        self.inspect("{{.State.StartedAt}}")
    }

    /// The container's cgroup directory for `controller` (v1, e.g. `"pids"`),
    /// or its unified (v2) directory when `controller` is `""`, read from the
    /// init process's `/proc/<pid>/cgroup`.
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        let pid = self.init_pid();
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_else(|e| panic!("reading /proc/{pid}/cgroup: {e}"));
        crate::cgroup::dir_from_proc_cgroup(&text, controller).unwrap_or_else(|| {
            panic!("no cgroup for controller {controller:?} in /proc/{pid}/cgroup:\n{text}")
        })
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let out = docker(["rm", "-f", "-v", self.id.as_str()]);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if !err.contains("No such container") {
                eprintln!("warning: docker rm -f {} failed: {}", self.name, err.trim());
            }
        }
    }
}
