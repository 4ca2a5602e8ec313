import Foundation
import VitLensCore

/// Standardisation with the train set's statistics, as scikit-learn's StandardScaler: mean and
/// population standard deviation (ddof 0) per feature; a constant feature keeps scale 1.
public struct Standardizer: Sendable {
    public let mean: [Double]
    public let scale: [Double]

    /// x: (N, D) row-major.
    public init(fitting x: [Float], rows n: Int, cols d: Int) {
        var m = [Double](repeating: 0, count: d), v = [Double](repeating: 0, count: d)
        for r in 0..<n { for j in 0..<d { m[j] += Double(x[r * d + j]) } }
        for j in 0..<d { m[j] /= Double(n) }
        for r in 0..<n { for j in 0..<d { let t = Double(x[r * d + j]) - m[j]; v[j] += t * t } }
        mean = m
        scale = v.map { let s = ($0 / Double(n)).squareRoot(); return s > 0 ? s : 1 }
    }

    /// (N, D) float32 → standardised float64.
    public func transform(_ x: [Float], rows n: Int) -> [Double] {
        let d = mean.count
        var out = [Double](repeating: 0, count: n * d)
        for r in 0..<n { for j in 0..<d { out[r * d + j] = (Double(x[r * d + j]) - mean[j]) / scale[j] } }
        return out
    }
}

/// Multinomial logistic regression with an L2 penalty on the weights (not the intercepts), the
/// problem scikit-learn's LogisticRegression(C=C) solves with lbfgs:
///   minimise (1/N)·Σᵢ −log softmax(W·xᵢ + b)[yᵢ] + ‖W‖²/(2·C·N)
/// (scikit-learn scales its objective by 1/N the same way). Two classes use the binary form, as
/// scikit-learn does: one weight vector, sigmoid. Solved by L-BFGS in float64 to max|∇| ≤ gtol.
public struct LogisticRegression: Sendable {
    public let classes: Int
    public let features: Int
    /// (K, D), or (1, D) for two classes; row-major.
    public var weights: [Double]
    public var bias: [Double]
    public var solver: MinimizeResult

    var outputs: Int { classes == 2 ? 1 : classes }

    /// x: (N, D) standardised features; labels in 0..<classes.
    public static func fit(_ x: [Double], labels: [Int], rows n: Int, cols d: Int, classes k: Int,
                           C: Double = 1, gtol: Double = 1e-7, maxIterations: Int = 2000) -> LogisticRegression {
        precondition(k >= 2 && n > 0 && x.count == n * d && labels.count == n)
        let o = k == 2 ? 1 : k
        let penalty = 1 / (C * Double(n))
        var z = [Double](repeating: 0, count: n * o)
        let fg: ([Double], inout [Double]) -> Double = { p, g in
            // p = [W (o, D), b (o)]; z = x·Wᵀ + b.
            var loss = 0.0
            p.withUnsafeBufferPointer { pw in
                x.withUnsafeBufferPointer { xb in
                    z.withUnsafeMutableBufferPointer { zb in
                        for r in 0..<n { for c in 0..<o { zb[r * o + c] = pw[o * d + c] } }
                        dgemm(transB: true, m: n, n: o, k: d, a: xb.baseAddress!, lda: d, b: pw.baseAddress!, ldb: d,
                              beta: 1, c: zb.baseAddress!, ldc: o)
                        // Loss, and z overwritten with ∂loss/∂z = (p − onehot)/N.
                        for r in 0..<n {
                            let row = zb.baseAddress! + r * o
                            if o == 1 {
                                let t = row[0], yv = Double(labels[r])
                                // log(1 + e^t) − y·t, stably.
                                loss += max(t, 0) + log1p(exp(-abs(t))) - yv * t
                                row[0] = (1 / (1 + exp(-t)) - yv) / Double(n)
                            } else {
                                var m = -Double.infinity
                                for c in 0..<o { m = max(m, row[c]) }
                                var s = 0.0
                                for c in 0..<o { s += exp(row[c] - m) }
                                let lse = m + log(s)
                                loss += lse - row[labels[r]]
                                for c in 0..<o { row[c] = exp(row[c] - lse) / Double(n) }
                                row[labels[r]] -= 1 / Double(n)
                            }
                        }
                        g.withUnsafeMutableBufferPointer { gb in
                            // ∇W = ∂zᵀ·x + W/(C·N); ∇b = Σ_rows ∂z.
                            for i in 0..<(o * d) { gb[i] = penalty * pw[i] }
                            dgemm(transA: true, m: o, n: d, k: n, a: zb.baseAddress!, lda: o, b: xb.baseAddress!,
                                ldb: d,
                                  beta: 1, c: gb.baseAddress!, ldc: d)
                            for c in 0..<o {
                                var t = 0.0
                                for r in 0..<n { t += zb[r * o + c] }
                                gb[o * d + c] = t
                            }
                        }
                    }
                }
            }
            var w2 = 0.0
            for i in 0..<(o * d) { w2 += p[i] * p[i] }
            return loss / Double(n) + 0.5 * penalty * w2
        }
        let r = lbfgs([Double](repeating: 0, count: o * d + o), gtol: gtol, maxIterations: maxIterations, fg)
        return LogisticRegression(
            classes: k, features: d, weights: Array(r.x[0..<(o * d)]), bias: Array(r.x[(o * d)...]), solver: r)
    }

    /// Class scores (N, K) (for two classes: (N, 1), the logit of class 1).
    public func decision(_ x: [Double], rows n: Int) -> [Double] {
        let o = outputs, d = features
        var z = [Double](repeating: 0, count: n * o)
        for r in 0..<n { for c in 0..<o { z[r * o + c] = bias[c] } }
        x.withUnsafeBufferPointer { xb in
            weights.withUnsafeBufferPointer { wb in
                z.withUnsafeMutableBufferPointer { zb in
                    dgemm(transB: true, m: n, n: o, k: d, a: xb.baseAddress!, lda: d, b: wb.baseAddress!, ldb: d,
                          beta: 1, c: zb.baseAddress!, ldc: o)
                }
            }
        }
        return z
    }

    /// Predicted classes; ties go to the lowest class index (numpy's argmax).
    public func predict(_ x: [Double], rows n: Int) -> [Int] {
        let z = decision(x, rows: n), o = outputs
        return (0..<n).map { r in
            if o == 1 { return z[r] > 0 ? 1 : 0 }
            var best = 0
            for c in 1..<o where z[r * o + c] > z[r * o + best] { best = c }
            return best
        }
    }

    public static func accuracy(_ predicted: [Int], _ labels: [Int]) -> Double {
        guard !labels.isEmpty else { return .nan }
        return Double(zip(predicted, labels).filter { $0 == $1 }.count) / Double(labels.count)
    }
}
