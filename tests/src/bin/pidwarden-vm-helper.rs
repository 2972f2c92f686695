//! `pidwarden-vm-helper`: the workloads the cgroup v2 kernel tests run inside
//! their VM guest (scripts/vm/guest-cgroup-v2.sh), where only busybox is
//! otherwise available. Each prints one line saying what it did, then stays
//! alive (its children too) until killed, so the cgroups keep what it made:
//!
//! - `forks N`: tries N forks; prints `forks ok=X refused=Y`, where `refused`
//!   counts the forks the kernel refused with EAGAIN (a pids limit);
//! - `zombies N`: forks N children that exit at once and never reaps them;
//! - `threads N`: starts N threads; prints `threads TID...`;
//! - `hog MIB`: allocates and touches MIB MiB (a memory limit below that gets
//!   it OOM-killed); prints `hog survived` and exits if it is not;
//! - `dump`: prints the cgroup tree under /sys/fs/cgroup (a `D` line per
//!   directory: its process and thread lists and the pids and memory files)
//!   and the processes (a `P` line each: parent, state, cgroup, threads,
//!   command line), as the kernel shows them, in one process (a busybox
//!   loop forking per file takes minutes in an emulated guest);
//! - `get URL [TOKEN]`: an HTTP GET of `http://IP:PORT/PATH` (with a bearer
//!   token), the body printed, exit status 0 on a 200 (busybox's static wget
//!   crashes resolving names in an initramfs without NSS; the systemd host
//!   has no curl);
//! - `post URL TOKEN FILE`: POSTs FILE as JSON with a bearer token; prints
//!   `STATUS BODY`.

use std::io::Write as _;

fn pause_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions; it only waits for a signal.
        unsafe { libc::pause() };
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn forks(n: u32) -> ! {
    let (mut ok, mut refused, mut other) = (0u32, 0u32, 0u32);
    for _ in 0..n {
        // SAFETY: the process is single-threaded here; the child only calls
        // the async-signal-safe pause.
        match unsafe { libc::fork() } {
            0 => pause_forever(),
            -1 => match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => refused += 1,
                _ => other += 1,
            },
            _ => ok += 1,
        }
    }
    say(&format!("forks ok={ok} refused={refused} other={other}"));
    pause_forever()
}

fn zombies(n: u32) -> ! {
    let mut made = 0;
    for _ in 0..n {
        // SAFETY: single-threaded; the child exits at once with _exit.
        match unsafe { libc::fork() } {
            0 => unsafe { libc::_exit(0) },
            -1 => {}
            _ => made += 1,
        }
    }
    say(&format!("zombies {made}"));
    pause_forever()
}

fn threads(n: u32) -> ! {
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..n {
        let tx = tx.clone();
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) };
            let _ = tx.send(tid);
            pause_forever()
        });
    }
    let tids: Vec<String> = rx.iter().take(n as usize).map(|t| t.to_string()).collect();
    say(&format!("threads {}", tids.join(" ")));
    pause_forever()
}

fn hog(mib: usize) {
    let mut v: Vec<u8> = Vec::with_capacity(mib << 20);
    // Touch every page so that it is charged.
    for _ in 0..(mib << 8) {
        v.extend_from_slice(&[1u8; 4096]);
    }
    say(&format!("hog survived {}", v.len()));
    std::process::exit(0)
}

/// An HTTP/1.0 request to `http://IP:PORT/PATH`: the body of a 200 (or
/// with `any_status`, `STATUS BODY`), or what went wrong.
fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: &[u8],
    any_status: bool,
) -> Result<String, String> {
    use std::io::Read as _;
    use std::time::Duration;
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(10))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .and_then(|()| s.write_all(body))
    .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
    let resp = String::from_utf8_lossy(&resp);
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head.lines().next().unwrap_or("");
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if any_status {
        return Ok(format!("{code} {body}"));
    }
    if code != "200" {
        return Err(format!("{url}: {status}"));
    }
    Ok(body.to_string())
}

/// The first line of a file, trimmed; "" when unreadable.
fn first_line(p: &std::path::Path) -> String {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_default()
}

/// The value of `key` in a flat-keyed file; "" when absent.
fn key(p: &std::path::Path, key: &str) -> String {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(key)).then(|| f.next().unwrap_or("").to_string())
            })
        })
        .unwrap_or_default()
}

/// A list file (`cgroup.procs`, `cgroup.threads`) as `a,b,c,`; `ERR` when
/// reading it fails.
fn list(p: &std::path::Path) -> String {
    match std::fs::read_to_string(p) {
        Ok(s) => s.lines().map(|l| format!("{},", l.trim())).collect(),
        Err(_) => "ERR".into(),
    }
}

fn dump() {
    use std::path::{Path, PathBuf};
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = Vec::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d != root {
            dirs.push(d.clone());
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    dirs.sort();
    let mut out = String::new();
    for d in &dirs {
        let rel = d.strip_prefix(root).unwrap_or(d).display().to_string();
        let threads = list(&d.join("cgroup.threads"));
        out.push_str(&format!(
            "D rel={rel} type={} procs={} threads={} pids.current={} pids.max={} pids.peak={} \
             pids.events={} pids.events.local={} memory.current={} memory.max={} oom_kill={} \
             inactive_file={}\n",
            first_line(&d.join("cgroup.type")).replace(' ', "_"),
            list(&d.join("cgroup.procs")),
            if threads == "ERR" {
                String::new()
            } else {
                threads
            },
            first_line(&d.join("pids.current")),
            first_line(&d.join("pids.max")),
            first_line(&d.join("pids.peak")),
            key(&d.join("pids.events"), "max"),
            key(&d.join("pids.events.local"), "max"),
            first_line(&d.join("memory.current")),
            first_line(&d.join("memory.max")),
            key(&d.join("memory.events"), "oom_kill"),
            key(&d.join("memory.stat"), "inactive_file"),
        ));
    }
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    for pid in pids {
        let p = PathBuf::from(format!("/proc/{pid}"));
        let Ok(stat) = std::fs::read_to_string(p.join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (state, ppid) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
        let cg = std::fs::read_to_string(p.join("cgroup"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            })
            .unwrap_or_default();
        let mut tids: Vec<u32> = std::fs::read_dir(p.join("task"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                    .collect()
            })
            .unwrap_or_default();
        tids.sort_unstable();
        let tids: String = tids.iter().map(|t| format!("{t},")).collect();
        let cmd = std::fs::read(p.join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push_str(&format!(
            "P pid={pid} ppid={ppid} state={state} cg={cg} tids={tids} cmd={}\n",
            cmd.trim_end()
        ));
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = |i: usize| -> u32 { args.get(i).and_then(|s| s.parse().ok()).unwrap_or(1) };
    match args.first().map(String::as_str) {
        Some("forks") => forks(n(1)),
        Some("zombies") => zombies(n(1)),
        Some("threads") => threads(n(1)),
        Some("hog") => hog(n(1) as usize),
        Some("dump") => dump(),
        Some("get") | Some("post") => {
            let url = args.get(1).map_or("", String::as_str);
            let token = args.get(2).map(String::as_str);
            let got = if args[0] == "get" {
                request("GET", url, token, b"", false)
            } else {
                let file = args.get(3).map_or("", String::as_str);
                std::fs::read(file)
                    .map_err(|e| format!("{file}: {e}"))
                    .and_then(|b| request("POST", url, token, &b, true))
            };
            match got {
                Ok(body) => {
                    print!("{body}");
                    let _ = std::io::stdout().flush();
                }
                Err(e) => {
                    eprintln!("{}: {e}", args[0]);
                    std::process::exit(1)
                }
            }
        }
        _ => {
            eprintln!(
                "usage: pidwarden-vm-helper forks N | zombies N | threads N | hog MIB | dump | get URL [TOKEN] | post URL TOKEN FILE"
            );
            std::process::exit(2)
        }
    }
}
