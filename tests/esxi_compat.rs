//! Stand-ins for an ESXi host: the binary's ELF form, and a full post under a seccomp filter
//! that makes every syscall newer than Linux 3.16 fail with ENOSYS, as an old VMkernel would.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use crate::support::fake_x::{Behaviour, FakeX};
use crate::support::{agent, binary, run, with_credentials};

/// x86_64 syscall numbers from 318 (`getrandom`, Linux 3.17) up to the newest, which covers
/// `statx`, `rseq`, `io_uring_*`, `pidfd_*`, `clone3`, `close_range`, `openat2`,
/// `faccessat2`, `epoll_pwait2` and everything after.
fn newer_syscalls() -> Vec<i64> {
    (318..=470).collect()
}

fn enosys_filter() -> BpfProgram {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = newer_syscalls()
        .into_iter()
        .map(|nr| (nr, vec![]))
        .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        TargetArch::x86_64,
    )
    .unwrap();
    filter.try_into().unwrap()
}

#[test]
fn named_syscalls_are_in_the_filtered_range() {
    let filtered = newer_syscalls();
    for nr in [
        libc::SYS_getrandom,
        libc::SYS_statx,
        libc::SYS_clone3,
        libc::SYS_rseq,
        libc::SYS_pidfd_open,
        libc::SYS_openat2,
        libc::SYS_faccessat2,
        libc::SYS_close_range,
        libc::SYS_epoll_pwait2,
        libc::SYS_io_uring_setup,
    ] {
        assert!(filtered.contains(&nr), "syscall {nr} not filtered");
    }
}

#[test]
fn posts_when_newer_syscalls_return_enosys() {
    let dir = tempfile::tempdir().unwrap();
    let x = FakeX::start(dir.path(), Behaviour::default());
    let program = enosys_filter();
    let mut cmd = agent(dir.path());
    with_credentials(&mut cmd)
        .args(["post", "--api-base", &x.base_url(), "--ca-file"])
        .arg(&x.ca_file)
        .arg("posted under an old-kernel seccomp filter");
    // SAFETY: between fork and exec the closure only installs a prebuilt BPF program (prctl
    // and seccomp syscalls), which allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || seccompiler::apply_filter(&program).map_err(std::io::Error::other));
    }
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(x.posted(), ["posted under an old-kernel seccomp filter"]);
}

#[test]
fn the_filter_really_denies_getrandom() {
    // Guards the test above against a filter that silently allows everything.
    let program = enosys_filter();
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", "exit 0"]);
    let status = unsafe {
        cmd.pre_exec(move || {
            seccompiler::apply_filter(&program).map_err(std::io::Error::other)?;
            let r = libc::syscall(libc::SYS_getrandom, [0u8; 4].as_mut_ptr(), 4usize, 0u32);
            let errno = *libc::__errno_location();
            if r == -1 && errno == libc::ENOSYS {
                Ok(())
            } else {
                Err(std::io::Error::other("getrandom was not denied"))
            }
        })
    }
    .status();
    assert!(status.as_ref().is_ok_and(|s| s.success()), "{status:?}");
}

#[test]
fn binary_is_static_non_pie_without_interpreter() {
    let path = binary();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF", "{}", path.display());
    assert_eq!(bytes[4], 2, "64-bit");
    let e_type = u16::from_le_bytes([bytes[16], bytes[17]]);
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    let phentsize = u16::from_le_bytes([bytes[54], bytes[55]]) as usize;
    let phnum = u16::from_le_bytes([bytes[56], bytes[57]]) as usize;
    let types: Vec<u32> = (0..phnum)
        .map(|i| {
            let at = phoff + i * phentsize;
            u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
        })
        .collect();
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    if std::env::var_os("ESXI_TWEET_BIN").is_some() {
        // Only the musl release build has to be in the ESXi form; cargo's debug build is not.
        assert_eq!(e_type, 2, "ELF type must be EXEC (2), got {e_type}");
        assert!(!types.contains(&PT_INTERP), "has a PT_INTERP");
        assert!(!types.contains(&PT_DYNAMIC), "is dynamically linked");
        assert!(
            bytes.len() <= 2_621_440,
            "{} bytes, over 2.5 MiB",
            bytes.len()
        );
    }
}
