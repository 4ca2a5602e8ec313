import Foundation

/// Choosing OpenBLAS's kernel family by the CPU's features.
///
/// Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not recognise newer CPUs and falls back to its
/// generic "Prescott" kernels, about 5x slower than the AVX-512 ones. The family can only be
/// chosen with OPENBLAS_CORETYPE *before* the library initialises, which happens when the
/// process loads it, so vitlens re-executes itself once with the right value set.
/// `VITLENS_BLAS_CORETYPE=keep` turns this off; `VITLENS_BLAS_CORETYPE=NAME` forces a family.
public enum BLASKernelChoice {
    /// How wide a vector ISA a kernel family uses: 3 AVX-512, 2 AVX2+FMA, 1 AVX, 0 SSE or less.
    public static func rank(_ core: String) -> Int {
        switch core.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return 3
        case "haswell", "zen": return 2
        case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator": return 1
        default: return 0
        }
    }

    /// The best family OpenBLAS 0.3.21 has for a CPU with these /proc/cpuinfo flags.
    public static func best(flags: Set<String>, vendor: String) -> String? {
        let avx512 = ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"].allSatisfy(flags.contains)
        if avx512 { return flags.contains("avx512_bf16") ? "Cooperlake" : "SkylakeX" }
        if flags.contains("avx2") && flags.contains("fma") {
            return vendor == "AuthenticAMD" ? "Zen" : "Haswell"
        }
        if flags.contains("avx") { return "Sandybridge" }
        return nil
    }

    /// The OPENBLAS_CORETYPE to re-execute with, or nil to keep the running kernels.
    public static func decide(current: String, flags: Set<String>, vendor: String,
                              override: String?) -> String? {
        if let override, !override.isEmpty {
            if override.lowercased() == "keep" { return nil }
            return override.lowercased() == current.lowercased() ? nil : override
        }
        guard let want = best(flags: flags, vendor: vendor) else { return nil }
        return rank(current) < rank(want) ? want : nil
    }

    /// (flags, vendor) from /proc/cpuinfo; empty where it cannot be read (non-Linux).
    public static func cpuFeatures() -> (Set<String>, String) {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else {
            return ([], "")
        }
        var flags = Set<String>(), vendor = ""
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = parts[0].trimmingCharacters(in: .whitespaces)
            if key == "flags" && flags.isEmpty {
                flags = Set(parts[1].split(separator: " ").map(String.init))
            } else if key == "vendor_id" && vendor.isEmpty {
                vendor = parts[1].trimmingCharacters(in: .whitespaces)
            }
            if !flags.isEmpty && !vendor.isEmpty { break }
        }
        return (flags, vendor)
    }

    static let guardVariable = "VITLENS_BLAS_REEXEC"

    /// Re-executes the running program with a better OPENBLAS_CORETYPE when the loaded
    /// kernels are weaker than the CPU allows. Returns only if no re-exec was needed or possible.
    public static func ensureBestKernel() {
        let env = ProcessInfo.processInfo.environment
        if env[guardVariable] != nil { return }  // already re-executed once: never loop
        let (flags, vendor) = cpuFeatures()
        guard let want = decide(current: BLASRuntime.coreName, flags: flags, vendor: vendor,
                                override: env["VITLENS_BLAS_CORETYPE"]) else { return }
        setenv("OPENBLAS_CORETYPE", want, 1)
        setenv(guardVariable, "1", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // execv returned: it failed. Carry on with the kernels we have; results are the same.
        unsetenv(guardVariable)
    }
}
