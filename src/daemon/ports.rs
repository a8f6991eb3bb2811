//! Binding Herald's listeners, and saying who holds a port already taken:
//! the process whose socket listens on it (from `/proc/net/tcp{,6}` and
//! `/proc/*/fd`, where this user may look), else "another process",
//! with the config key and the flag that move Herald elsewhere.

use std::net::{SocketAddr, TcpListener};

use super::{Fatal, EXIT_BIND};

/// Binds `addr` (non-blocking). `key` and `flag` name the config key and
/// the `serve` flag that set it, for the error.
///
/// # Errors
///
/// [`EXIT_BIND`] with one line: the address, the OS error, the likely
/// owner when the address is in use, and what to change.
pub(super) fn bind(addr: SocketAddr, key: &str, flag: &str) -> Result<TcpListener, Fatal> {
    let l = TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| {
            let owner = if e.kind() == std::io::ErrorKind::AddrInUse {
                format!(
                    "; it is held by {}",
                    owner(addr.port()).unwrap_or_else(|| "another process".into())
                )
            } else {
                String::new()
            };
            Fatal(
                EXIT_BIND,
                anyhow::anyhow!(
                    "cannot listen on {addr} ({key}): {e}{owner}; set {key} in the config or pass \
                     `serve {flag} ADDRESS` (port 0 picks a free port{})",
                    if key == "admin_listen" {
                        ", \"off\" runs no admin listener"
                    } else {
                        ""
                    }
                ),
            )
        })?;
    Ok(l)
}

/// "pid N (command line)" of a process with a socket listening on TCP
/// `port`, if this user can see one.
fn owner(port: u16) -> Option<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = proc_entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Another user's process: not readable, skipped.
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|t| wanted.iter().any(|w| t.as_os_str() == w.as_str()))
        });
        if holds {
            return Some(describe(pid));
        }
    }
    None
}

/// "pid N (its command line)", or "pid N" when that cannot be read.
pub(super) fn describe(pid: u32) -> String {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
    let cmd = cmd.trim();
    if cmd.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid} ({cmd})")
    }
}

/// The inodes of the sockets in a `/proc/net/tcp` table listening (state
/// `0A`) on `port`, on any local address.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let port = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let (_, p) = local.rsplit_once(':')?;
            (p == port && *f.get(3)? == "0A")
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only listening sockets on the port count, on either family's table.
    #[test]
    fn listening_inodes_of_a_port() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                  0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0\n\
                  1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0 100 0 0 10 0\n\
                  2: 00000000:23E6 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 333 1 0 100 0 0 10 0\n";
        assert_eq!(
            listening_inodes(v4, 8080),
            vec![111],
            "listening, not connected"
        );
        assert_eq!(listening_inodes(v4, 9190), vec![333], "any address");
        assert!(listening_inodes(v4, 80).is_empty(), "other port");
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                  0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 444 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(v6, 8080), vec![444], "IPv6");
        assert!(listening_inodes("garbage\nnot a table\n", 8080).is_empty());
    }

    /// A port this process listens on is found to be this process's.
    #[test]
    fn owner_of_our_own_port() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let o = owner(port).expect("our own socket is visible to us");
        assert!(o.starts_with(&format!("pid {}", std::process::id())), "{o}");
    }
}
