//! What the supervisor does to itself because it holds the master key and
//! unwraps tenant keys: no core dumps, no ptrace or `/proc/PID/mem` for
//! processes of its own uid, and the key's page locked out of swap. And
//! the open-files limit its tenants need.

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

/// Descriptors the supervisor holds per running tenant: its end of the
/// worker's socketpair, the worker's stderr pipe, the tenant's SIP (UDP,
/// TCP) and HTTP sockets (5, counted in `/proc/PID/fd` with 50 tenants),
/// and one to spare for an egress connection or a backup file.
pub const FILES_PER_TENANT: u64 = 6;

/// Raises the soft open-files limit to the hard one, and returns it.
/// systemd's default soft limit (1,024) would stop new tenants near 170;
/// the hard limit is what the admin allowed.
pub fn raise_open_files() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct passed by reference and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads the struct passed by reference and nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "BULKHEAD_NOFILE_CHILD";
    const NAME: &str = "self_protect::tests::the_soft_open_files_limit_is_raised_to_the_hard_one";

    fn limits() -> (u64, u64) {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct passed by reference and nothing else.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
        (l.rlim_cur, l.rlim_max)
    }

    /// In a fresh process (lowering the limit must not touch the other
    /// tests' threads): a soft limit of 64 comes back up to the hard one.
    #[test]
    fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let (_, hard) = limits();
        let low = libc::rlimit {
            rlim_cur: hard.min(64),
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct passed by reference and nothing else.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        assert_eq!(raise_open_files().unwrap(), hard);
        assert_eq!(limits(), (hard, hard));
    }
}
