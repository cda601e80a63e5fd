//! Allocator settings for training on glibc.
//!
//! candle allocates a fresh buffer for every activation and gradient of every step. glibc serves
//! buffers above its mmap threshold (128 KiB, adapting up to 32 MiB) with a new `mmap`, so each
//! step maps, zero-faults and unmaps hundreds of megabytes: on the default backbone half the
//! step time was spent in the kernel. Keeping large buffers on the heap and not trimming it
//! between steps lets the same pages serve every step (`facelock bench train`: 25 → 33 img/s
//! at width 0.7 on 2 cores).

/// Largest mmap threshold glibc accepts on 64-bit targets (`HEAP_MAX_SIZE / 2`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// Free memory at the top of the heap kept for the next step instead of returned to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1 << 30;
/// Extra heap requested whenever the heap grows, so growth happens in few large steps.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: libc::c_int = 256 << 20;

/// Tunes the process allocator for a training loop. Returns whether every setting was taken
/// (`false` on platforms other than glibc Linux, where nothing is changed).
///
/// Call it once at the start of a command that runs candle over many batches (train, eval,
/// embed). It changes allocation policy for the
/// whole process, so memory benchmarks (`facelock bench loss`) must not call it.
pub fn tune_for_training() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only updates glibc's allocator parameters; it takes no pointers.
        let taken = unsafe {
            [
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                libc::mallopt(libc::M_TOP_PAD, TOP_PAD),
            ]
        };
        let all = taken.iter().all(|&ok| ok == 1);
        tracing::debug!(all, "allocator tuned for training");
        all
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_every_setting_and_allocation_still_works() {
        assert!(super::tune_for_training());
        // A buffer above the old threshold, written, freed and taken again.
        for _ in 0..3 {
            let buffer = vec![1.5f32; 40 << 20 >> 2];
            assert_eq!(
                buffer.iter().map(|&x| x as f64).sum::<f64>(),
                1.5 * (10 << 20) as f64
            );
        }
    }
}
