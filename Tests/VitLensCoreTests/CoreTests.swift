import Foundation
import TestSupport
import VitLensCore
import XCTest

final class BLASTests: XCTestCase {
    /// sgemm against the plain triple loop over awkward shapes and every transpose combination.
    /// Tolerance: 1e-5·(1 + |ref|), float32 accumulation over k ≤ 197 terms of magnitude ≤ 1.
    func testSgemmMatchesReference() {
        var rng = SystemRandomNumberGenerator()
        for (m, n, k) in [(1, 1, 1), (197, 64, 192), (3, 197, 197), (17, 5, 33)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
                    let b = (0..<(k * n)).map { _ in Float.random(in: -1...1, using: &rng) }
                    var c1 = (0..<(m * n)).map { _ in Float.random(in: -1...1, using: &rng) }
                    var c2 = c1
                    let lda = ta ? m : k, ldb = tb ? k : n
                    sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.7, a: a, lda: lda, b: b, ldb: ldb,
                        beta: 0.5, c: &c1, ldc: n)
                    sgemmReference(
                        transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.7, a: a, lda: lda, b: b, ldb: ldb, beta: 0.5,
                        c: &c2, ldc: n)
                    let r = compare(c1.map(Double.init), c2.map(Double.init), tolerance: 1e-5, mixed: true)
                    XCTAssertEqual(r.violations, 0, "m=\(m) n=\(n) k=\(k) ta=\(ta) tb=\(tb): \(r)")
                }
            }
        }
    }

    func testOpenBLASReportsACore() {
        XCTAssertFalse(BLASRuntime.coreName.isEmpty)
        XCTAssertGreaterThan(BLASRuntime.threads, 0)
    }
}

final class KernelChoiceTests: XCTestCase {
    let avx512: Set<String> = ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"]

    func testGenericKernelsOnAnAVX512CPUAreReplaced() {
        XCTAssertEqual(
            BLASKernelChoice.decide(current: "Prescott", flags: avx512, vendor: "GenuineIntel", override: nil),
            "SkylakeX")
        XCTAssertEqual(
            BLASKernelChoice.decide(current: "Haswell", flags: avx512, vendor: "GenuineIntel", override: nil),
            "SkylakeX")
        XCTAssertEqual(
            BLASKernelChoice.decide(
            current: "Prescott", flags: avx512.union(["avx512_bf16"]), vendor: "GenuineIntel", override: nil),
            "Cooperlake")
    }

    func testRecognisedKernelsAreKept() {
        XCTAssertNil(BLASKernelChoice.decide(current: "SkylakeX", flags: avx512, vendor: "GenuineIntel", override: nil))
        XCTAssertNil(
            BLASKernelChoice.decide(
            current: "Zen", flags: ["avx", "avx2", "fma"], vendor: "AuthenticAMD", override: nil))
    }

    func testAVX2AndOlderCPUs() {
        XCTAssertEqual(
            BLASKernelChoice.decide(
            current: "Prescott", flags: ["avx", "avx2", "fma"], vendor: "GenuineIntel", override: nil), "Haswell")
        XCTAssertEqual(
            BLASKernelChoice.decide(
            current: "Prescott", flags: ["avx", "avx2", "fma"], vendor: "AuthenticAMD", override: nil), "Zen")
        // Without AVX-512 we never ask for AVX-512 kernels (they would crash with SIGILL).
        XCTAssertNotEqual(
            BLASKernelChoice.best(flags: ["avx", "avx2", "fma", "avx512f"], vendor: "GenuineIntel"), "SkylakeX")
        XCTAssertNil(
            BLASKernelChoice.decide(
            current: "Prescott", flags: ["sse2", "sse4_2"], vendor: "GenuineIntel", override: nil))
    }

    func testOverride() {
        XCTAssertNil(
            BLASKernelChoice.decide(current: "Prescott", flags: avx512, vendor: "GenuineIntel", override: "keep"))
        XCTAssertEqual(
            BLASKernelChoice.decide(current: "SkylakeX", flags: avx512, vendor: "GenuineIntel", override: "Haswell"),
            "Haswell")
    }
}

final class ResampleTests: XCTestCase {
    func testWeightsAreNormalisedAndInRange() {
        for (i, o) in [(512, 37), (37, 512), (81, 120), (14, 16), (16, 14)] {
            let w = ResampleWeights.bicubic(inSize: i, outSize: o)
            for k in 0..<o {
                let s = (0..<w.count[k]).reduce(0.0) { $0 + w.weights[k * w.stride + $1] }
                XCTAssertEqual(s, 1, accuracy: 1e-12)
                XCTAssertGreaterThanOrEqual(w.first[k], 0)
                XCTAssertLessThanOrEqual(w.first[k] + w.count[k], i)
            }
        }
    }

    func testIdentitySizeIsIdentity() {
        let src = (0..<(2 * 5 * 5)).map { Float($0) }
        XCTAssertEqual(resampleBicubicFloat(src, channels: 2, inH: 5, inW: 5, outH: 5, outW: 5), src)
    }
}

final class FastMathTests: XCTestCase {
    /// fastExp against libm over the softmax's range: relative error ≤ 2e-7.
    func testExp() {
        var worst: Float = 0
        for v in stride(from: Float(-87), to: 88, by: 0.0031) {
            worst = max(worst, abs(fastExp(v) - expf(v)) / expf(v)) }
        XCTAssertLessThanOrEqual(worst, 2e-7)
        XCTAssertEqual(fastExp(-.infinity), 0)
        XCTAssertEqual(fastExp(0), 1)
    }

    /// fastLog against libm from 1e-6 to 1 (the entropy's p + 1e-6): error ≤ 2e-7·max(1, |ln x|).
    func testLog() {
        var worst: Float = 0
        var x: Float = 1e-6
        while x <= 1.001 { worst = max(worst, abs(fastLog(x) - logf(x)) / max(1, abs(logf(x)))); x *= 1.0007 }
        XCTAssertLessThanOrEqual(worst, 2e-7)
    }

    func testReductions() {
        for n in [1, 7, 8, 9, 197] {
            let v = (0..<n).map { Float($0 % 13) - 4.5 }
            XCTAssertEqual(sum(v, n), v.reduce(0, +), accuracy: 1e-4)
            XCTAssertEqual(maximum(v, n), v.max()!)
        }
    }
}
