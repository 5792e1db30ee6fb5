//! Stand-ins for an ESXi host: the binary's ELF form, and a full post under a seccomp
//! *allowlist* of the classic syscalls the VMkernel is known to provide (the reference lists
//! what the agent needs); every other syscall fails with ENOSYS, as on a host that lacks it.
//! So a dependency that starts using epoll, statx, clone3, rseq or the like fails here, not on
//! a host. `getrandom` is denied too, so the `/dev/urandom` fallback is what runs.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use crate::support::fake_x::{Behaviour, FakeX};
use crate::support::{agent, binary, run, with_credentials};

/// The syscalls an ESXi host can be relied on for (`../shared/reference/esxi-autodeploy.md`),
/// plus `execve` (the filter is installed before the agent is executed), `exit` (a thread's
/// end), `rt_sigreturn`, and `sendto`/`recvfrom` (std's socket reads and writes): all in
/// Linux since 2.0, and in every VMkernel that runs BusyBox.
fn classic_syscalls() -> Vec<i64> {
    vec![
        libc::SYS_execve,
        libc::SYS_exit,
        libc::SYS_rt_sigreturn,
        libc::SYS_arch_prctl,
        libc::SYS_set_tid_address,
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_mprotect,
        libc::SYS_munmap,
        libc::SYS_exit_group,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_open,
        libc::SYS_openat,
        libc::SYS_fcntl,
        libc::SYS_fstat,
        libc::SYS_stat,
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_close,
        libc::SYS_clone,
        libc::SYS_futex,
        libc::SYS_gettid,
        libc::SYS_socket,
        libc::SYS_connect,
        libc::SYS_sendto,
        libc::SYS_recvfrom,
        libc::SYS_poll,
        libc::SYS_getsockopt,
        libc::SYS_setsockopt,
        libc::SYS_ioctl,
        libc::SYS_clock_nanosleep,
    ]
}

fn enosys_filter() -> BpfProgram {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = classic_syscalls()
        .into_iter()
        .map(|nr| (nr, vec![]))
        .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::ENOSYS as u32),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .unwrap();
    filter.try_into().unwrap()
}

#[test]
fn newer_syscalls_are_outside_the_allowlist() {
    let allowed = classic_syscalls();
    for nr in [
        libc::SYS_getrandom,
        libc::SYS_statx,
        libc::SYS_clone3,
        libc::SYS_rseq,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_wait,
        libc::SYS_pidfd_open,
        libc::SYS_openat2,
        libc::SYS_close_range,
        libc::SYS_io_uring_setup,
        libc::SYS_membarrier,
    ] {
        assert!(!allowed.contains(&nr), "syscall {nr} is allowed");
    }
}

#[test]
fn posts_when_only_classic_syscalls_exist() {
    let dir = tempfile::tempdir().unwrap();
    let x = FakeX::start(dir.path(), Behaviour::default());
    let program = enosys_filter();
    let mut cmd = agent(dir.path());
    with_credentials(&mut cmd)
        .args(["post", "--api-base", &x.base_url(), "--ca-file"])
        .arg(&x.ca_file)
        .arg("posted under an ESXi syscall allowlist");
    // SAFETY: between fork and exec the closure only installs a prebuilt BPF program (prctl
    // and seccomp syscalls), which allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || seccompiler::apply_filter(&program).map_err(std::io::Error::other));
    }
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(x.posted(), ["posted under an ESXi syscall allowlist"]);
}

#[test]
fn the_filter_really_denies_what_it_does_not_list() {
    // Guards the test above against a filter that silently allows everything.
    let program = enosys_filter();
    // The check runs in the child between fork and exec and ends it with _exit, so no
    // (dynamically linked) program has to run under the allowlist.
    let mut cmd = std::process::Command::new("/nonexistent");
    let status = unsafe {
        cmd.pre_exec(move || {
            seccompiler::apply_filter(&program).map_err(std::io::Error::other)?;
            let r = libc::syscall(libc::SYS_getrandom, [0u8; 4].as_mut_ptr(), 4usize, 0u32);
            let errno = *libc::__errno_location();
            let e = libc::syscall(libc::SYS_epoll_create1, 0);
            let epoll_errno = *libc::__errno_location();
            let denied = r == -1 && errno == libc::ENOSYS && e == -1 && epoll_errno == libc::ENOSYS;
            libc::_exit(if denied { 0 } else { 1 })
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
