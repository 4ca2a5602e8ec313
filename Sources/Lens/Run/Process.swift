import Foundation
import VitLensCore

#if os(Linux)
/// glibc's mallopt(3) (Swift's Glibc module does not export it).
@_silgen_name("mallopt") private func mallopt(_ param: Int32, _ value: Int32) -> Int32
private let M_MMAP_THRESHOLD: Int32 = -3
#endif

/// Process-wide settings every vitlens run makes first.
public enum VitLensProcess {
    /// Picks OpenBLAS's kernels (re-executing once if needed) and fixes the heap's behaviour;
    /// call before anything else.
    public static func prepare() {
        BLASKernelChoice.ensureBestKernel()
        #if os(Linux)
        // glibc raises its mmap threshold to the size of each large block freed (up to 32 MB),
        // after which batch-sized buffers come from the heap and stay there, fragmented across
        // threads: peak RSS of `cka` then grew with the number of images (390 → 445 MB from 512
        // to 2,048 images at batch 32). A fixed threshold returns them to the system when freed.
        _ = mallopt(M_MMAP_THRESHOLD, 256 << 10)
        #endif
    }

    /// Threads for OpenBLAS and vitlens's own loops.
    public static func setThreads(_ n: Int) {
        BLASRuntime.setThreads(n)
        Workers.count = n
    }
}
