//! Everything pidwarden reads from `/proc`; no other module of either daemon
//! reads it.
//!
//! - [`parse`]: the files' formats, parsed with no I/O;
//! - [`reader`]: the full-scan [`ProcessReader`] (every listed process's
//!   `stat` read each scrape) and one-off reads ([`read_process`],
//!   [`read_children`], [`read_ns_pid`], [`read_cgroup_membership`]);
//! - [`table`]: the incremental [`ProcessTable`], which learns exits from
//!   pidfds and arrivals from `cgroup.procs`, so a scrape costs what changed;
//! - [`budget`]: the file descriptor budget both keep below the open file
//!   limit;
//! - [`statm`]: a process's resident memory, read on demand.

pub mod budget;
mod exits;
pub mod parse;
pub mod reader;
mod schedule;
pub mod statm;
pub mod table;

pub use budget::{kept_handle_budget, nofile_limit, raise_nofile_limit, FdPool, RESERVED_FDS};
pub use parse::{
    parse_cmdline, parse_nspid, parse_stat, Cmdline, CmdlineBuilder, ProcState, Stat,
    CMDLINE_PREFIX,
};
pub use reader::{
    read_cgroup_membership, read_children, read_ns_pid, read_process, ContainerProcesses, Process,
    ProcessReader,
};
pub use table::{ProcessTable, TableStats};
