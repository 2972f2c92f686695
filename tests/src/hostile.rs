//! Containers whose processes do what a tenant can: name themselves with
//! bytes that are not UTF-8, carry a megabyte of arguments, put secrets on
//! their command lines. Each builder returns once the container runs what
//! it describes (as the kernel shows it).

use std::time::Duration;

use crate::docker::TestContainer;
use crate::util::poll_until;

/// The processes the kernel lists in the container's `cgroup.procs`.
pub fn container_pids(c: &TestContainer) -> Vec<i32> {
    std::fs::read_to_string(c.cgroup_dir("pids").join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// How many of the container's processes are named `comm` (as the kernel
/// keeps it, bytes).
pub fn named(c: &TestContainer, comm: &[u8]) -> usize {
    container_pids(c)
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/comm"))
                .is_ok_and(|n| n.strip_suffix(b"\n") == Some(comm))
        })
        .count()
}

/// The name the copies of [`bad_name_copies`] give themselves.
pub const BAD_NAME: &[u8] = b"\xff\xfex";

/// A container whose init renamed itself to 15 bytes cut in the middle of a
/// character (`aaaaaaaaaaaaaa` and the first byte of `é`), and runs three
/// copies of a shell that named itself `\377\376x` (`printf '\377\376x' >
/// /proc/self/comm`) and carries that name twice among its arguments, each
/// waiting on a `sleep`: 7 processes, one duplicate group of 3 copies.
pub fn bad_name_copies() -> TestContainer {
    let c = TestContainer::run(
        &[],
        &[
            "sh",
            "-c",
            "printf 'aaaaaaaaaaaaaa\\303\\251' > /proc/self/comm; \
             bad=$(printf '\\377\\376x'); \
             for i in 1 2 3; do \
               sh -c 'printf \"\\377\\376x\" > /proc/self/comm; sleep 1000; :' \"$bad\" \"$bad\" & \
             done; wait",
        ],
    );
    let ok = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        (container_pids(&c).len() == 7 && named(&c, BAD_NAME) == 3).then_some(())
    });
    assert!(ok.is_some(), "the container never ran its renamed copies");
    c
}

/// Bytes of one argument of [`long_argv_copies`] (an argument may be 128
/// KiB at most), and how many each copy has: 1 MiB in all.
pub const LONG_ARG_BYTES: usize = 64 * 1024;
/// See [`LONG_ARG_BYTES`].
pub const LONG_ARGS: usize = 16;

/// A container running `copies` (even) copies of `sh -c 'sleep 1000; :'`
/// with [`LONG_ARGS`] arguments of [`LONG_ARG_BYTES`] each (1 MiB), half of
/// them ending in one more argument `X` and half in `Y`: two duplicate
/// groups whose command lines differ only in their last byte, a megabyte in.
/// `1 + 2 * copies` processes (each copy's shell waits on its `sleep`).
pub fn long_argv_copies(copies: usize) -> TestContainer {
    let script = format!(
        "a=$(head -c {LONG_ARG_BYTES} /dev/zero | tr '\\0' x); set --; \
         for i in $(seq {LONG_ARGS}); do set -- \"$@\" \"$a\"; done; \
         for i in $(seq {half}); do \
           sh -c 'sleep 1000; :' copy \"$@\" X & sh -c 'sleep 1000; :' copy \"$@\" Y & \
         done; wait",
        half = copies / 2
    );
    let c = TestContainer::run(&[], &["sh", "-c", &script]);
    let want = 1 + 2 * (copies / 2) * 2;
    let ok = poll_until(Duration::from_secs(300), Duration::from_secs(1), || {
        (container_pids(&c).len() == want).then_some(())
    });
    assert!(
        ok.is_some(),
        "{} of {want} processes started",
        container_pids(&c).len()
    );
    c
}

/// The secret every copy of [`secret_copies`] carries.
pub const SECRET: &str = "S3cr3t";

/// The command lines of [`secret_copies`] (arguments of `sh -c 'sleep
/// 1000; :' <args>`), each with [`SECRET`] in it, and how each is shown.
pub const SECRET_COMMANDS: [(&str, &str); 5] = [
    ("mysql -uroot -pS3cr3t", "mysql -uroot -p***"),
    ("curl -u bob:S3cr3t", "curl -u bob:***"),
    ("redis-cli -a S3cr3t", "redis-cli -a ***"),
    ("app --key=S3cr3t", "app --key=***"),
    (
        "curl --header X-Api-Key:S3cr3t",
        "curl --header X-Api-Key:***",
    ),
];

/// A container running two copies of each of [`SECRET_COMMANDS`] (as the
/// arguments after `sh -c 'sleep 1000; :' $0`), each waiting on a `sleep`:
/// five duplicate groups of 2, 21 processes.
pub fn secret_copies() -> TestContainer {
    let mut script = String::new();
    for (args, _) in SECRET_COMMANDS {
        script.push_str(&format!(
            "for i in 1 2; do sh -c 'sleep 1000; :' {args} & done; "
        ));
    }
    script.push_str("wait");
    let c = TestContainer::run(&[], &["sh", "-c", &script]);
    let want = 1 + 2 * 2 * SECRET_COMMANDS.len();
    let ok = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        (container_pids(&c).len() == want).then_some(())
    });
    assert!(
        ok.is_some(),
        "{} of {want} processes",
        container_pids(&c).len()
    );
    c
}
