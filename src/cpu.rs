//! CPU affinity for threads that own a core: the data plane's shard threads
//! (`--pin-shards`) and the load harness's ceiling writer.

/// The CPUs this process may run on (empty if the kernel will not say).
pub fn allowed() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, and sched_getaffinity
    // writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect()
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) -> std::io::Result<()> {
    // SAFETY: as above; CPU_SET writes within the set, and sched_setaffinity
    // reads it for the calling thread only.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if result == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_thread_can_be_pinned_to_a_cpu_it_is_allowed() {
        let allowed = super::allowed();
        assert!(!allowed.is_empty());
        std::thread::spawn(move || super::pin(allowed[0])).join().unwrap().unwrap();
    }
}
