//! The supervisor's handle on a process the spawn server started for it.
//!
//! The spawn server clones each worker's first process with `CLONE_PARENT`,
//! so that process (the reaper, or the worker itself without isolation) is
//! the supervisor's own child: the supervisor alone waits for it and reads
//! its exit status, as it did when it forked the process itself. This is
//! the part of `std::process::Child` the supervisor used.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

#[derive(Debug)]
pub struct Child {
    pid: Pid,
    /// Set once waited for: the pid may belong to another process after.
    status: Option<ExitStatus>,
}

impl Child {
    /// `pid` must be a child of this process that nobody else waits for.
    pub(super) fn adopt(pid: u32) -> Self {
        Self {
            pid: Pid::from_raw(pid as i32),
            status: None,
        }
    }

    pub fn id(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// SIGKILL, unless it was already waited for (its pid may be reused).
    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        kill(self.pid, Signal::SIGKILL).map_err(io::Error::from)
    }

    /// Blocks until it exits; then returns the same status every time.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, code)) => break ExitStatus::from_raw((code & 0xff) << 8),
                Ok(WaitStatus::Signaled(_, signal, core)) => {
                    break ExitStatus::from_raw(signal as i32 | if core { 0x80 } else { 0 })
                }
                Ok(_) => continue, // stopped or continued: still alive
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.status = Some(status);
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // Ours wait for them: the point is that std's Child does not.
    #[allow(clippy::zombie_processes)]
    fn reports_exit_codes_and_signals_like_std() {
        let code = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let mut child = Child::adopt(code.id());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(7));
        assert_eq!(child.wait().unwrap().code(), Some(7), "waits once");
        child.kill().unwrap(); // a no-op once waited for

        let sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut child = Child::adopt(sleeper.id());
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(status.to_string(), "signal: 9 (SIGKILL)");
    }
}
