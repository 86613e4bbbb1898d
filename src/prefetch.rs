//! A CPU cache hint, for passes that touch thousands of cold objects in a
//! row: the shard's write pass asks for the next connections' state while it
//! writes the current one (docs/benchmarks.md §36).
//!
//! Invariant: a hint changes nothing and never faults; on targets without
//! one it is a no-op.

/// Asks the CPU to load `value`'s cache lines (at most `MAX_LINES` of them).
pub fn prefetch<T: ?Sized>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        const LINE: usize = 64;
        const MAX_LINES: usize = 8;
        let start = (value as *const T).cast::<i8>();
        let len = std::mem::size_of_val(value).min(MAX_LINES * LINE);
        for offset in (0..len).step_by(LINE) {
            // SAFETY: a prefetch is a hint that does not fault, whatever the
            // address; this one stays inside `value`.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(start.wrapping_add(offset))
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
