import Foundation

/// matplotlib's magma, read exactly as matplotlib reads a 256-entry ListedColormap:
/// index = ⌊v·256⌋ clipped to 0…255 (values below vmin take the first colour, above vmax the
/// last), bytes = ⌊entry·255⌋ (`Colormap.__call__(…, bytes=True)`, what `imsave` writes).
public enum Magma {
    public static func color(_ v: Double) -> Color {
        let i = v.isNaN ? 0 : Int(min(255, max(0, (v * 256).rounded(.down))))
        func byte(_ x: Double) -> UInt8 { UInt8((x * 255).rounded(.down)) }
        return Color(byte(magmaTable[3 * i]), byte(magmaTable[3 * i + 1]), byte(magmaTable[3 * i + 2]))
    }

    /// The colour of `value` on [vmin, vmax], or nil for NaN (drawn as `undefined`).
    public static func color(_ value: Double, vmin: Double, vmax: Double) -> Color? {
        guard !value.isNaN else { return nil }
        let span = vmax - vmin
        return color(span > 0 ? (value - vmin) / span : 0)
    }

    /// Undefined cells: a blue-grey that magma never produces, hatched so it reads in greyscale too.
    public static let undefined = Color(hex: 0x9fb4c7)
}

/// Tick positions on [lo, hi]: steps of 1, 2, 2.5 or 5 × 10ᵏ giving at most `maxCount` ticks.
public func niceTicks(_ lo: Double, _ hi: Double, maxCount: Int = 7) -> [Double] {
    guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
    let raw = (hi - lo) / Double(max(1, maxCount - 1))
    let mag = pow(10, (log10(raw)).rounded(.down))
    let step = [1.0, 2, 2.5, 5, 10].map { $0 * mag }.first { $0 >= raw * (1 - 1e-9) } ?? 10 * mag
    var ticks: [Double] = []
    var k = (lo / step - 1e-9).rounded(.up)
    while k * step <= hi + step * 1e-9 {
        ticks.append(abs(k * step) < step * 1e-9 ? 0 : k * step)
        k += 1
    }
    return ticks
}

/// A tick label with as many decimals as the step between ticks needs.
public func tickLabel(_ v: Double, step: Double) -> String {
    var decimals = 0
    while decimals < 6 {
        let scaled = step * pow(10, Double(decimals))
        if abs(scaled - scaled.rounded()) < 1e-6 * max(1, scaled) { break }
        decimals += 1
    }
    return String(format: "%.\(decimals)f", v)
}

/// The smallest tick-step multiple at or above x (a fixed, tidy axis end).
public func niceCeiling(_ x: Double) -> Double {
    guard x > 0, x.isFinite else { return 1 }
    let mag = pow(10, (log10(x)).rounded(.down))
    for m in [1.0, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10] where m * mag >= x * (1 - 1e-12) { return m * mag }
    return 10 * mag
}
