import Foundation

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny seeded generator, identical on every machine —
/// for splits, shuffles and initialisation that a seed must reproduce bit for bit.
public struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform on [0, 1) with 53 random bits.
    public mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// A standard normal draw (Box–Muller) truncated to ±2, like torch's trunc_normal_ defaults.
    public mutating func truncatedNormal() -> Double {
        while true {
            let u1 = max(uniform(), 1e-300), u2 = uniform()
            let z = (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
            if abs(z) <= 2 { return z }
        }
    }

    /// Fisher–Yates shuffle of 0..<n.
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, Int(next() % UInt64(i + 1))) }
        return p
    }
}
