//! Hand-built collections for the unit tests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use pidwarden_shared::cgroup::{CgroupDirs, Container, MemoryStats, PidsStats, Runtime};
use pidwarden_shared::collect::{ContainerSnapshot, Snapshot, Stage};
use pidwarden_shared::groups::Group;
use pidwarden_shared::node::NodeStats;
use pidwarden_shared::procfs::{Cmdline, ContainerProcesses, ProcState, Process};
use pidwarden_shared::Limit;

use crate::runtime::ContainerMeta;

/// Id of the limited, named container.
pub const ID_A: &str = "aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111";
/// Id of the unlimited container without metadata.
pub const ID_B: &str = "bbbbbbbbbbbb2222222222222222222222222222222222222222222222222222";

/// A command line from text, one argument per space-separated word.
fn args(cmd: &str) -> Cmdline {
    Cmdline::from_args(cmd.split(' '))
}

fn proc(pid: i32, ppid: i32, state: char, cmd: &str) -> Process {
    Process {
        pid,
        ppid,
        start_time: 1000 + pid as u64,
        state: ProcState::from_letter(state),
        comm: Arc::from(cmd.split(' ').next().unwrap_or("")),
        cmdline: args(if state == 'Z' { "" } else { cmd }),
        threads: 1,
        cpu_ticks: 0,
        child_cpu_ticks: 0,
    }
}

fn group(ppid: i32, cmd: &str, pids: &[i32]) -> Group {
    Group {
        ppid,
        cmdline: args(cmd),
        pids: pids.to_vec(),
    }
}

fn container(id: &str) -> Container {
    Container {
        id: id.to_string(),
        runtime: Runtime::Docker,
        pod_uid: None,
        rel_path: PathBuf::from(format!("docker/{id}")),
        dirs: CgroupDirs::default(),
    }
}

/// Container A: limited, with duplicate groups; container B: unlimited.
pub fn snapshot() -> Snapshot {
    let long = format!("python3 -m server {}", "x".repeat(200));
    let a = ContainerSnapshot {
        container: container(ID_A),
        pids: Some(PidsStats {
            current: 12,
            limit: Limit::Max(100),
            headroom: Some(88),
            limit_hits: 4,
            peak: Some(40),
        }),
        memory: Some(MemoryStats {
            usage: 10_485_760,
            working_set: 8_388_608,
            limit: Limit::Max(268_435_456),
            oom_kills: 1,
        }),
        processes: ContainerProcesses {
            live: (1..=11)
                .map(|p| proc(p, if p == 1 { 0 } else { 1 }, 'S', "sleep 1000"))
                .collect(),
            zombies: vec![proc(40, 1, 'Z', "")],
        }
        .into(),
        groups: vec![
            group(1, "sleep 1000", &[2, 3, 4, 5]),
            group(1, "worker --password=hunter2 --port 80", &[6, 7, 8]),
            group(6, "sleep 1000", &[9, 10]),
            group(1, &long, &[11, 12]),
            group(1, "say \"hi\" C:\\dir", &[13, 14]),
        ]
        .into(),
    };
    let b = ContainerSnapshot {
        container: container(ID_B),
        pids: Some(PidsStats {
            current: 1,
            limit: Limit::Unlimited,
            headroom: None,
            limit_hits: 0,
            peak: None,
        }),
        memory: Some(MemoryStats {
            usage: 4096,
            working_set: 0,
            limit: Limit::Unlimited,
            oom_kills: 0,
        }),
        processes: ContainerProcesses {
            live: vec![proc(100, 0, 'S', "sleep 1000")],
            zombies: vec![],
        }
        .into(),
        groups: Vec::new().into(),
    };
    Snapshot {
        containers: vec![a, b],
        errors: vec![(
            Stage::Proc,
            "reading /proc/77/stat: permission denied".into(),
        )],
        ambiguous: Vec::new(),
        node: Some(NodeStats {
            tasks: 300,
            pid_max: 4_194_304,
            threads_max: 62_811,
            boot_time: 1_700_000_000,
            ticks_per_second: 100,
        }),
    }
}

/// Metadata for container A only.
pub fn meta() -> HashMap<String, ContainerMeta> {
    let mut labels = HashMap::new();
    labels.insert("com.docker.compose.project".to_string(), "shop".to_string());
    labels.insert("com.docker.compose.service".to_string(), "web".to_string());
    let mut m = HashMap::new();
    m.insert(
        ID_A.to_string(),
        ContainerMeta::new("/shop-web-1", "busybox:latest", labels),
    );
    m
}
