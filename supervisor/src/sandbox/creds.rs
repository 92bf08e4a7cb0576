//! Credentials and capabilities: the worker ends with the tenant's uid and
//! gid, no supplementary groups, and every capability set empty
//! (effective, permitted, inheritable, ambient, bounding).

use std::io;

use super::process::check;
use super::Identity;

/// Drops every capability from the bounding set, so nothing exec'd later
/// can ever regain one.
pub fn drop_bounding_set(cap_last: u32) -> io::Result<()> {
    for cap in 0..=cap_last {
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })?;
    }
    Ok(())
}

/// setgroups([]), then gid, then uid (all three of each: real, effective,
/// saved). From root to a non-zero uid the kernel clears the permitted and
/// effective capability sets.
pub fn become_tenant(id: Identity) -> io::Result<()> {
    // SAFETY: setgroups with a zero count reads no memory.
    check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresgid(id.gid, id.gid, id.gid) })?;
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresuid(id.uid, id.uid, id.uid) })
}

/// Clears the inheritable set (which survives a uid change) and the ambient set.
pub fn clear_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and two data structs (version 3
    // layout), both live on this stack frame for the duration of the call.
    check(unsafe {
        libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) as libc::c_int
    })?;
    // SAFETY: prctl with integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })
}
