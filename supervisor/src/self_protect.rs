//! What the supervisor does to itself because it holds the master key and
//! unwraps tenant keys: no core dumps, no ptrace or `/proc/PID/mem` for
//! processes of its own uid, and the key's page locked out of swap.

/// Makes the supervisor, which holds the master key and unwraps tenant
/// keys, produce no core dump and refuse ptrace and `/proc/PID/mem` to
/// processes of its own uid (only root's `CAP_SYS_PTRACE` remains).
pub fn protect_process() -> std::io::Result<()> {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct passed by reference and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: PR_SET_DUMPABLE takes plain integers and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the page holding `key` in RAM, so it is never written to swap.
pub fn lock_in_ram(key: &[u8; 32]) -> bool {
    // SAFETY: mlock only pins the pages spanning these 32 bytes, which live
    // in a Box for as long as the keystore; it reads and writes no memory.
    unsafe { libc::mlock(key.as_ptr().cast(), key.len()) == 0 }
}
