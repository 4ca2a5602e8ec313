import Foundation

/// The outcome of a minimisation.
public struct MinimizeResult: Sendable {
    public var x: [Double]
    public var value: Double
    /// max |∂f/∂xᵢ| at the end.
    public var gradientMax: Double
    public var iterations: Int
    public var converged: Bool
}

/// L-BFGS (Nocedal & Wright, Numerical Optimization, 2nd ed., Alg. 7.4 two-loop recursion, 10
/// correction pairs) with a strong-Wolfe line search (Alg. 3.5/3.6, c₁ = 1e−4, c₂ = 0.9).
/// Deterministic: no randomness, the same arithmetic in the same order every run.
/// Stops when max |gradient| ≤ `gtol`, or when f stops decreasing at double precision.
/// `fg(x, &g)` returns f(x) and writes ∇f(x) into g.
public func lbfgs(_ x0: [Double], gtol: Double, maxIterations: Int, memory: Int = 10,
                  _ fg: ([Double], inout [Double]) -> Double) -> MinimizeResult {
    let n = x0.count
    var x = x0, g = [Double](repeating: 0, count: n)
    var f = fg(x, &g)
    var s: [[Double]] = [], y: [[Double]] = [], rho: [Double] = []
    var it = 0
    func maxAbs(_ v: [Double]) -> Double { v.reduce(0) { max($0, abs($1)) } }
    func dot(_ a: [Double], _ b: [Double]) -> Double {
        var t = 0.0; for i in 0..<a.count { t += a[i] * b[i] }; return t }
    while it < maxIterations {
        if maxAbs(g) <= gtol {
            return MinimizeResult(x: x, value: f, gradientMax: maxAbs(g), iterations: it, converged: true) }
        // Direction d = −H·g by the two-loop recursion, H₀ = (sᵀy / yᵀy)·I.
        var q = g
        var alpha = [Double](repeating: 0, count: s.count)
        for i in stride(from: s.count - 1, through: 0, by: -1) {
            alpha[i] = rho[i] * dot(s[i], q)
            for j in 0..<n { q[j] -= alpha[i] * y[i][j] }
        }
        if let ls = s.last, let ly = y.last {
            let gamma = dot(ls, ly) / dot(ly, ly)
            for j in 0..<n { q[j] *= gamma }
        }
        for i in 0..<s.count {
            let beta = rho[i] * dot(y[i], q)
            for j in 0..<n { q[j] += s[i][j] * (alpha[i] - beta) }
        }
        var d = q.map { -$0 }
        var slope = dot(g, d)
        if !(slope < 0) {  // not a descent direction (numerical trouble): restart from steepest descent
            s.removeAll(); y.removeAll(); rho.removeAll()
            d = g.map { -$0 }
            slope = dot(g, d)
        }
        let step0 = s.isEmpty ? min(1, 1 / max(1e-300, maxAbs(g))) : 1
        guard let (step, fNew, gNew) = wolfeSearch(x: x, f: f, g: g, d: d, slope: slope, step0: step0, fg) else {
            // No acceptable step: f cannot decrease further at double precision.
            return MinimizeResult(
                x: x, value: f, gradientMax: maxAbs(g), iterations: it, converged: maxAbs(g) <= gtol * 1e3)
        }
        let sk = d.map { $0 * step }
        var yk = [Double](repeating: 0, count: n)
        for j in 0..<n { yk[j] = gNew[j] - g[j]; x[j] += sk[j] }
        let sy = dot(sk, yk)
        if sy > 1e-12 * sqrt(dot(sk, sk) * dot(yk, yk)) {
            s.append(sk); y.append(yk); rho.append(1 / sy)
            if s.count > memory { s.removeFirst(); y.removeFirst(); rho.removeFirst() }
        }
        let fOld = f
        f = fNew
        g = gNew
        it += 1
        if fOld - f <= 1e-16 * max(abs(f), abs(fOld), 1) && maxAbs(g) <= gtol * 1e3 {
            return MinimizeResult(x: x, value: f, gradientMax: maxAbs(g), iterations: it, converged: true)
        }
    }
    return MinimizeResult(x: x, value: f, gradientMax: maxAbs(g), iterations: it, converged: maxAbs(g) <= gtol)
}

/// A step satisfying the strong Wolfe conditions along d, or nil when none is found.
private func wolfeSearch(x: [Double], f: Double, g: [Double], d: [Double], slope: Double, step0: Double,
                         _ fg: ([Double], inout [Double]) -> Double) -> (Double, Double, [Double])? {
    let c1 = 1e-4, c2 = 0.9
    var gt = [Double](repeating: 0, count: x.count)
    func eval(_ a: Double) -> (Double, Double, [Double]) {
        var xt = x
        for j in 0..<x.count { xt[j] += a * d[j] }
        let ft = fg(xt, &gt)
        var sl = 0.0
        for j in 0..<x.count { sl += gt[j] * d[j] }
        return (ft, sl, gt)
    }
    var aPrev = 0.0, fPrev = f, sPrev = slope
    var a = step0
    for i in 0..<40 {
        let (fa, sa, ga) = eval(a)
        if !fa.isFinite || fa > f + c1 * a * slope || (i > 0 && fa >= fPrev) {
            return zoom(lo: aPrev, fLo: fPrev, sLo: sPrev, hi: a, fHi: fa, f: f, slope: slope, c1: c1, c2: c2, eval)
        }
        if abs(sa) <= -c2 * slope { return (a, fa, ga) }
        if sa >= 0 {
            return zoom(lo: a, fLo: fa, sLo: sa, hi: aPrev, fHi: fPrev, f: f, slope: slope, c1: c1, c2: c2, eval) }
        aPrev = a; fPrev = fa; sPrev = sa
        a *= 2
    }
    return nil
}

private func zoom(lo: Double, fLo: Double, sLo: Double, hi: Double, fHi: Double, f: Double, slope: Double,
                  c1: Double, c2: Double, _ eval: (Double) -> (Double, Double, [Double])) -> (
                      Double, Double, [Double])? {
    var lo = lo, fLo = fLo, sLo = sLo, hi = hi, fHi = fHi
    for _ in 0..<60 {
        // Minimiser of the quadratic through (lo, fLo, sLo) and (hi, fHi), kept inside the bracket.
        let dx = hi - lo
        var a = lo - sLo * dx * dx / (2 * (fHi - fLo - sLo * dx))
        let left = min(lo, hi), right = max(lo, hi)
        if !a.isFinite || a <= left + 0.1 * (right - left) || a >= right - 0.1 * (right - left) { a = (lo + hi) / 2 }
        let (fa, sa, ga) = eval(a)
        if !fa.isFinite || fa > f + c1 * a * slope || fa >= fLo {
            hi = a; fHi = fa
        } else {
            if abs(sa) <= -c2 * slope { return (a, fa, ga) }
            if sa * (hi - lo) >= 0 { hi = lo; fHi = fLo }
            lo = a; fLo = fa; sLo = sa
        }
        if abs(hi - lo) < 1e-16 * max(1, abs(lo)) { break }
    }
    // The bracket collapsed: accept the best point if it decreased f at all.
    if lo > 0 && fLo < f { let (fa, _, ga) = eval(lo); return (lo, fa, ga) }
    return nil
}
