/// Vectorised exp and log for the softmax and the attention entropy (Cephes `expf`/`logf`
/// polynomials, ~1–2 ulp over the ranges used), on 16 floats at a time so the compiler emits
/// AVX2/AVX-512 code. `expReference`/`logReference` are the plain libm versions they are tested against.
public typealias Float16x = SIMD16<Float>

@inline(__always)
public func fastExp(_ xIn: Float16x) -> Float16x {
    // exp(x) = 2^n · exp(r), n = round(x / ln 2), r = x − n·ln 2 (split in two for accuracy).
    let x = xIn.clamped(lowerBound: Float16x(repeating: -87.3), upperBound: Float16x(repeating: 88.3))
    let n = (x * 1.44269504088896341).rounded(.toNearestOrEven)
    var r = x - n * 0.693359375
    r = r - n * -2.12194440e-4
    let z = r * r
    var p = Float16x(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let e = p * z + r + 1
    // Scale by 2^n through the exponent bits.
    let bits = (SIMD16<Int32>(n) &+ 127) &<< 23
    let scale = unsafeBitCast(bits, to: Float16x.self)
    var out = e * scale
    out.replace(with: 0, where: xIn .< -87.3)
    return out
}

/// Natural log of positive, finite, normal inputs.
@inline(__always)
public func fastLog(_ x: Float16x) -> Float16x {
    let bits = unsafeBitCast(x, to: SIMD16<UInt32>.self)
    // x = m · 2^e with m in [0.5, 1), as frexpf.
    var e = Float16x(SIMD16<Int32>(truncatingIfNeeded: (bits &>> 23) & 0xFF) &- 126)
    var m = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F00_0000, to: Float16x.self)
    let small = m .< 0.707106781186547524
    e.replace(with: e - 1, where: small)
    m.replace(with: m + m - 1, where: small)
    m.replace(with: m - 1, where: .!small)
    let z = m * m
    var y = Float16x(repeating: 7.0376836292e-2)
    y = y * m - 1.1514610310e-1
    y = y * m + 1.1676998740e-1
    y = y * m - 1.2420140846e-1
    y = y * m + 1.4249322787e-1
    y = y * m - 1.6668057665e-1
    y = y * m + 2.0000714765e-1
    y = y * m - 2.4999993993e-1
    y = y * m + 3.3333331174e-1
    y = y * m * z
    y += e * -2.12194440e-4
    y += z * -0.5
    return m + y + e * 0.693359375
}


/// Loads up to 16 floats from `p` (lanes past `count` take `fill`).
@inline(__always)
public func load16(_ p: UnsafePointer<Float>, count: Int = 16, fill: Float = 0) -> Float16x {
    if count >= 16 { return UnsafeRawPointer(p).loadUnaligned(as: Float16x.self) }
    var v = Float16x(repeating: fill)
    for i in 0..<count { v[i] = p[i] }
    return v
}

/// Stores the first `count` lanes of `v` at `p`.
@inline(__always)
public func store16(_ v: Float16x, _ p: UnsafeMutablePointer<Float>, count: Int = 16) {
    if count >= 16 {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float16x.self)
        return
    }
    for i in 0..<count { p[i] = v[i] }
}
