//! `NSpid` parsing: the innermost namespace's pid, which tells the kill
//! planner and executor a container's init (pid 1 there) apart.

use pidwarden_shared::procfs::parse_nspid;

#[test]
fn nspid_takes_the_innermost_namespace() {
    let status = "Name:\tsh\nTgid:\t4242\nPid:\t4242\nPPid:\t4200\n\
                  NSpid:\t4242\t1\nNSpgid:\t4242\t1\n";
    assert_eq!(parse_nspid(status), Some(1));
    assert_eq!(parse_nspid("NSpid:\t4243\t7\n"), Some(7));
    assert_eq!(parse_nspid("NSpid:\t31\n"), Some(31));
    assert_eq!(parse_nspid("NSpid:\t5000\t300\t1\n"), Some(1));
    assert_eq!(parse_nspid("Name:\tsh\nPid:\t1\n"), None);
    assert_eq!(parse_nspid("NSpid:\t\n"), None);
    assert_eq!(parse_nspid("NSpid:\tabc\n"), None);
}
