//! The worker's minimal root: a tmpfs holding only read-only system paths
//! (`/usr` and the merged-usr links, the loader cache, Debian's alternatives
//! links, three devices), the
//! worker binary at `/bulkhead`, the tenant's own data directory at `/data`,
//! a private `/tmp` and a fresh `/proc`. Another tenant's directory, the
//! registry and the master key are not even visible.
//!
//! The operations are prepared (paths as C strings) before the fork and only
//! executed in the child.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::process::{check, fail};

/// Where the worker finds its data directory, inside its root.
pub const DATA: &str = "/data";
/// Where the worker binary is, inside its root.
pub const WORKER_BIN: &str = "/bulkhead/bulkhead-worker";

#[derive(Debug)]
enum Op {
    Dir(CString),
    File(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Bind {
        src: CString,
        dst: CString,
        writable: bool,
    },
    Tmpfs {
        dst: CString,
        opts: CString,
    },
    Proc(CString),
}

/// A prepared root file system.
#[derive(Debug)]
pub struct RootFs {
    root: CString,
    put_old: CString,
    ops: Vec<Op>,
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths hold no NUL")
}

impl RootFs {
    /// Plans a root at `mount_point` (an empty directory the supervisor
    /// owns) with `data_dir` and `bin_dir` bound in.
    pub fn plan(mount_point: &Path, data_dir: &Path, bin_dir: &Path) -> Self {
        let at = |p: &str| c(&mount_point.join(p.trim_start_matches('/')));
        let mut ops = vec![Op::Dir(at("usr"))];
        ops.push(Op::Bind {
            src: c(Path::new("/usr")),
            dst: at("usr"),
            writable: false,
        });
        // Merged-usr links (`/lib -> usr/lib`) are copied; real directories bound.
        for top in ["/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin"] {
            let path = Path::new(top);
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(path) {
                        ops.push(Op::Symlink {
                            target: c(&target),
                            link: at(top),
                        });
                    }
                }
                Ok(m) if m.is_dir() => {
                    ops.push(Op::Dir(at(top)));
                    ops.push(Op::Bind {
                        src: c(path),
                        dst: at(top),
                        writable: false,
                    });
                }
                _ => {}
            }
        }
        ops.push(Op::Dir(at("etc")));
        if Path::new("/etc/ld.so.cache").exists() {
            ops.push(Op::File(at("etc/ld.so.cache")));
            ops.push(Op::Bind {
                src: c(Path::new("/etc/ld.so.cache")),
                dst: at("etc/ld.so.cache"),
                writable: false,
            });
        }
        // Debian resolves some libraries through alternatives symlinks
        // (PocketSphinx's libblas.so.3 → /etc/alternatives/...).
        if Path::new("/etc/alternatives").is_dir() {
            ops.push(Op::Dir(at("etc/alternatives")));
            ops.push(Op::Bind {
                src: c(Path::new("/etc/alternatives")),
                dst: at("etc/alternatives"),
                writable: false,
            });
        }
        ops.push(Op::Dir(at("dev")));
        for dev in ["null", "zero", "urandom"] {
            let host = PathBuf::from("/dev").join(dev);
            ops.push(Op::File(at(&format!("dev/{dev}"))));
            ops.push(Op::Bind {
                src: c(&host),
                dst: at(&format!("dev/{dev}")),
                writable: true,
            });
        }
        ops.push(Op::Dir(at("bulkhead")));
        ops.push(Op::Bind {
            src: c(bin_dir),
            dst: at("bulkhead"),
            writable: false,
        });
        ops.push(Op::Dir(at(DATA)));
        ops.push(Op::Bind {
            src: c(data_dir),
            dst: at(DATA),
            writable: true,
        });
        ops.push(Op::Dir(at("tmp")));
        ops.push(Op::Tmpfs {
            dst: at("tmp"),
            opts: CString::new("size=16m,mode=1777").expect("no NUL"),
        });
        ops.push(Op::Dir(at("proc")));
        ops.push(Op::Proc(at("proc")));
        ops.push(Op::Dir(at(".old")));
        Self {
            root: c(mount_point),
            put_old: at(".old"),
            ops,
        }
    }

    /// Builds the root and pivots into it. Runs in the child, inside the new
    /// mount and pid namespaces, as root.
    pub fn enter(&self) -> io::Result<()> {
        // The supervisor's umask (077) would make every directory below
        // unreadable to the tenant's uid.
        // SAFETY: umask only sets this process's file mode mask.
        unsafe { libc::umask(0o022) };
        // Nothing we mount may propagate back to the host.
        mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
            .map_err(|e| fail(b"making mounts private failed\n", e))?;
        let flags = libc::MS_NOSUID | libc::MS_NODEV;
        mount(
            Some(c"tmpfs"),
            &self.root,
            Some(c"tmpfs"),
            flags,
            Some(c"mode=0755,size=1m"),
        )
        .map_err(|e| fail(b"mounting the root tmpfs failed\n", e))?;
        for op in &self.ops {
            apply(op)?;
        }
        // SAFETY: pivot_root reads two C strings that live for the call.
        check(unsafe {
            libc::syscall(
                libc::SYS_pivot_root,
                self.root.as_ptr(),
                self.put_old.as_ptr(),
            ) as libc::c_int
        })
        .map_err(|e| fail(b"pivot_root failed\n", e))?;
        // SAFETY: chdir reads a static C string.
        check(unsafe { libc::chdir(c"/".as_ptr()) })?;
        // SAFETY: umount2 reads a static C string; MNT_DETACH drops the host's
        // tree from this namespace lazily.
        check(unsafe { libc::umount2(c"/.old".as_ptr(), libc::MNT_DETACH) })
            .map_err(|e| fail(b"detaching the old root failed\n", e))?;
        // SAFETY: rmdir reads a static C string.
        check(unsafe { libc::rmdir(c"/.old".as_ptr()) })?;
        // The root itself becomes read-only; /data and /tmp stay writable.
        mount(
            None,
            c"/",
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            None,
        )
        .map_err(|e| fail(b"remounting the root read-only failed\n", e))
    }
}

fn apply(op: &Op) -> io::Result<()> {
    match op {
        // SAFETY: mkdir reads a C string prepared before the fork.
        Op::Dir(p) => check(unsafe { libc::mkdir(p.as_ptr(), 0o755) })
            .map_err(|e| fail(b"mkdir in the new root failed\n", e)),
        Op::File(p) => touch(p).map_err(|e| fail(b"creating a mount point file failed\n", e)),
        Op::Symlink { target, link } => {
            // SAFETY: symlink reads two C strings prepared before the fork.
            check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })
                .map_err(|e| fail(b"symlink in the new root failed\n", e))
        }
        Op::Bind { src, dst, writable } => {
            mount(Some(src), dst, None, libc::MS_BIND | libc::MS_REC, None)
                .map_err(|e| fail(b"bind mount failed\n", e))?;
            let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID;
            if !writable {
                flags |= libc::MS_RDONLY;
            }
            mount(None, dst, None, flags, None)
                .map_err(|e| fail(b"remounting a bind mount failed\n", e))
        }
        Op::Tmpfs { dst, opts } => {
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            mount(Some(c"tmpfs"), dst, Some(c"tmpfs"), flags, Some(opts))
                .map_err(|e| fail(b"mounting /tmp failed\n", e))
        }
        Op::Proc(dst) => {
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            mount(Some(c"proc"), dst, Some(c"proc"), flags, None)
                .map_err(|e| fail(b"mounting /proc failed\n", e))
        }
    }
}

/// mount(2) with optional arguments as null pointers.
fn mount(
    src: Option<&CStr>,
    dst: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is null or a C string that outlives the call.
    check(unsafe { libc::mount(ptr(src), dst.as_ptr(), ptr(fstype), flags, ptr(data).cast()) })
}

/// Creates an empty file to bind-mount a file onto.
fn touch(path: &CStr) -> io::Result<()> {
    // SAFETY: open reads a C string that outlives the call.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        )
    };
    check(fd)?;
    // SAFETY: closing the descriptor just opened.
    check(unsafe { libc::close(fd) })
}
