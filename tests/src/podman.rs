//! Podman of the test's own (`scripts/podman-service.sh`): storage, run
//! directory and the Docker-compatible API socket under a temp dir, removed
//! with every container on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::cgroup::CGROUP_ROOT;
use crate::node_script::{require_root_tools, script, script_down, script_up};
use crate::process::run_ok;
use crate::tempdir::TempDir;
use crate::util::unique_name;

/// The image Podman containers run (busybox).
pub const PODMAN_IMAGE: &str = "docker.io/library/kbox:1";

/// True when the Podman tests can run: root and `podman` installed.
/// Returns `false` (the test should return early) with a printed notice when
/// `PIDWARDEN_SKIP_DOCKER=1` or when not root; panics with a clear message
/// when podman is missing.
pub fn require_podman() -> bool {
    require_root_tools(
        "podman service",
        &["/usr/bin/podman", "/bin/busybox"],
        "podman and busybox-static",
    )
}

const SCRIPT: &str = "podman-service.sh";

/// A private Podman and its API service.
pub struct PodmanNode {
    dir: TempDir,
    socket: PathBuf,
}

/// A container run by a [`PodmanNode`] (removed with the node).
#[derive(Debug, Clone)]
pub struct PodmanContainer {
    /// Full id.
    pub id: String,
    /// Name (`pidwarden-test-*`).
    pub name: String,
}

impl PodmanNode {
    /// Loads the busybox image and starts `podman system service`.
    pub fn start() -> PodmanNode {
        let dir = TempDir::new();
        let socket = script_up(SCRIPT, dir.path());
        PodmanNode { dir, socket }
    }

    /// The API address, `unix:///…/podman.sock` (for `--podman-host`).
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs `podman <args>` with the node's flags; panics on failure.
    pub fn podman(&self, args: &[&str]) -> Output {
        run_ok(
            Command::new(script(SCRIPT))
                .arg("podman")
                .arg(self.dir.path())
                .args(args),
        )
    }

    /// `podman run -d --network none <args> --name pidwarden-test-… IMAGE <cmd>`.
    pub fn run(&self, args: &[&str], cmd: &[&str]) -> PodmanContainer {
        let name = unique_name();
        let mut all = vec![
            "run",
            "-d",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            "--name",
            &name,
        ];
        all.extend_from_slice(args);
        all.push(PODMAN_IMAGE);
        all.extend_from_slice(cmd);
        let out = self.podman(&all);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        PodmanContainer { id, name }
    }

    /// One field of `podman inspect` (a Go template such as `{{.State.StartedAt}}`).
    pub fn inspect(&self, id: &str, template: &str) -> String {
        let out = self.podman(&["inspect", "--format", template, id]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The container's cgroup in `controller`'s v1 hierarchy (cgroupfs
    /// manager: `libpod_parent/libpod-<id>`).
    pub fn cgroup_dir(&self, id: &str, controller: &str) -> PathBuf {
        Path::new(CGROUP_ROOT)
            .join(controller)
            .join(format!("libpod_parent/libpod-{id}"))
    }

    /// `pids.current` of the container's cgroup.
    pub fn tasks(&self, id: &str) -> u64 {
        let p = self.cgroup_dir(id, "pids").join("pids.current");
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

impl Drop for PodmanNode {
    fn drop(&mut self) {
        script_down(SCRIPT, self.dir.path());
    }
}
