//! Test kit for pidwarden's end-to-end tests.
//!
//! Everything here is synchronous and talks to the real thing: the `docker`
//! command line against a running dockerd, the cgroup v1/v2 filesystem under
//! `/sys/fs/cgroup`, child processes and plain HTTP on 127.0.0.1. Every
//! resource a helper creates is owned by a guard whose `Drop` removes it, so a
//! failing test still cleans up:
//!
//! - [`TestContainer`] — a busybox container named `pidwarden-test-*`,
//!   removed with `docker rm -f` on drop;
//! - [`TestCgroup`] — cgroups `/sys/fs/cgroup/<ctrl>/pidwarden-test-*`, whose
//!   processes are killed and whose directories are removed on drop;
//! - [`ChildGuard`] and [`Daemon`] — spawned processes, ended by PID on drop;
//!   [`Exporter`] and [`Remediator`] — the workspace's daemons on free ports;
//! - [`Stack`] — exporter, remediator, Prometheus and Alertmanager wired
//!   together on 127.0.0.1 with the shipped rules and routes;
//! - [`PrivateDocker`] — a dockerd (and containerd) of the test's own, to
//!   stop and restart, removed with its containers, mounts and files on drop;
//! - [`run_load`] — an open-loop HTTP load at a fixed rate, with latency
//!   quantiles measured from each request's due time;
//! - [`CriNode`] — a private containerd with its CRI plugin (scripts/cri-node.sh),
//!   stopped with its mounts on drop; [`TestPod`] — a pod driven through CRI
//!   as the kubelet does, removed with its pod cgroups on drop;
//! - [`PodmanNode`] — a Podman of the test's own with its Docker-compatible API
//!   (scripts/podman-service.sh), removed with its containers on drop;
//! - [`TempDir`] — a `pidwarden-test-*` directory removed on drop.
//!
//! [`promtool_check`] checks an exposition with Prometheus's own parser;
//! [`prom_api`] queries a Prometheus.
//!
//! Tests that need Docker or root cgroups start with [`require_docker`] or
//! [`require_cgroups`]: they fail with a clear message when the facility is
//! missing, unless `PIDWARDEN_SKIP_DOCKER=1` is set, in which case they print
//! `skipped: PIDWARDEN_SKIP_DOCKER=1` and return early.
//!
//! ```no_run
//! use pidwarden_tests::{require_docker, TestContainer};
//!
//! if !require_docker() {
//!     return;
//! }
//! let c = TestContainer::run(&["--pids-limit", "50"], &["sleep", "300"]);
//! assert!(c.init_pid() > 0);
//! ```

#![deny(missing_docs)]

mod alerting;
mod cgroup;
mod cri;
mod daemons;
mod docker;
mod exposition;
mod hostile;
mod http;
mod load;
mod node_script;
mod podman;
mod private_docker;
mod process;
mod prometheus;
mod promtool;
mod stack;
mod tempdir;
mod util;

pub use alerting::{alertmanager_config, rules_with_for};

pub use cgroup::{require_cgroups, TestCgroup, CGROUP_ROOT};
pub use cri::{require_cri, CriNode, TestPod, CRI_IMAGE};
pub use daemons::{tally, AuditRow, Exporter, Remediator};
pub use docker::{
    docker, docker_available, docker_command, ensure_image, ensure_image_tagged, image_exists,
    require_docker, TestContainer, TEST_IMAGE,
};
pub use exposition::{series, series_with, Series};
pub use hostile::{
    bad_name_copies, container_pids, long_argv_copies, named, secret_copies, BAD_NAME, LONG_ARGS,
    LONG_ARG_BYTES, SECRET, SECRET_COMMANDS,
};
pub use http::{
    free_port, http_get, http_post, try_http_get, try_http_get_with, try_http_post, wait_http,
    Reply,
};
pub use load::{run_load, LoadReport, LoadSpec};
pub use podman::{require_podman, PodmanContainer, PodmanNode, PODMAN_IMAGE};
pub use private_docker::PrivateDocker;
pub use process::{run_json, run_ok, ChildGuard, Daemon, READY_TIMEOUT};
pub use prometheus::{prom_api, urlencode};
pub use promtool::promtool_check;
pub use stack::{Stack, StackOptions};
pub use tempdir::TempDir;
pub use util::{
    now_ms, poll_until, rfc3339_ms, skip_docker, source_revision, unique_name, workspace_bin,
    workspace_root, BIN_DIR_ENV, NAME_PREFIX, SKIP_ENV,
};
