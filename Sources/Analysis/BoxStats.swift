/// Box-plot statistics as matplotlib's `boxplot` draws them: quartiles by linear interpolation
/// (numpy's default percentile), whiskers at the most extreme data within 1.5·IQR of the box,
/// everything beyond them an outlier.
public struct BoxStats: Sendable, Equatable {
    public let min, q1, median, q3, max: Double
    public let whiskerLow, whiskerHigh: Double
    public let n: Int
    public let outliers: [Double]

    public init(
        min: Double, q1: Double, median: Double, q3: Double, max: Double, whiskerLow: Double, whiskerHigh: Double,
                n: Int, outliers: [Double]) {
        self.min = min; self.q1 = q1; self.median = median; self.q3 = q3; self.max = max
        self.whiskerLow = whiskerLow; self.whiskerHigh = whiskerHigh; self.n = n; self.outliers = outliers
    }

    public init(_ values: [Double]) {
        precondition(!values.isEmpty, "box statistics of nothing")
        let v = values.sorted()
        n = v.count
        min = v.first!
        max = v.last!
        q1 = BoxStats.percentile(v, 0.25)
        median = BoxStats.percentile(v, 0.5)
        q3 = BoxStats.percentile(v, 0.75)
        let iqr = q3 - q1
        let lo = q1 - 1.5 * iqr, hi = q3 + 1.5 * iqr
        let wl = v.first { $0 >= lo } ?? q1, wh = v.last { $0 <= hi } ?? q3
        whiskerLow = wl
        whiskerHigh = wh
        outliers = v.filter { $0 < wl || $0 > wh }
    }

    /// numpy.percentile(method="linear") of sorted values.
    public static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        let pos = q * Double(sorted.count - 1)
        let lo = Int(pos.rounded(.down)), hi = Swift.min(lo + 1, sorted.count - 1)
        let frac = pos - Double(lo)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * frac
    }
}
