import Foundation

/// Separable resampling weights as PIL's `ImagingResample` computes them (and PyTorch's
/// antialiased `interpolate`, which copies PIL): for each output index, the first input index
/// and normalised weights. Bicubic uses a = −0.5 and a support widened by the downscale factor.
public struct ResampleWeights {
    public let first: [Int]
    public let count: [Int]
    /// weights[o * stride + j] for j in 0..<count[o].
    public let weights: [Double]
    public let stride: Int

    public static func bicubic(inSize: Int, outSize: Int) -> ResampleWeights {
        precondition(inSize > 0 && outSize > 0)
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 2.0 * filterScale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var first = [Int](repeating: 0, count: outSize)
        var count = [Int](repeating: 0, count: outSize)
        var weights = [Double](repeating: 0, count: outSize * ksize)
        for o in 0..<outSize {
            let center = (Double(o) + 0.5) * scale
            let ss = 1.0 / filterScale
            // PIL truncates toward zero here, as the C cast does.
            let xmin = max(Int(center - support + 0.5), 0)
            let xmax = min(Int(center + support + 0.5), inSize) - xmin
            var total = 0.0
            for x in 0..<xmax {
                let w = cubic((Double(x + xmin) - center + 0.5) * ss)
                weights[o * ksize + x] = w
                total += w
            }
            if total != 0 { for x in 0..<xmax { weights[o * ksize + x] /= total } }
            first[o] = xmin
            count[o] = xmax
        }
        return ResampleWeights(first: first, count: count, weights: weights, stride: ksize)
    }

    @inline(__always) static func cubic(_ v: Double) -> Double {
        let a = -0.5
        let x = abs(v)
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }
}

/// Antialiased bicubic resize of `channels` planes of (inH, inW) floats to (outH, outW),
/// horizontal pass first, in double precision (PyTorch `interpolate(mode="bicubic", antialias=True)`).
public func resampleBicubicFloat(_ src: [Float], channels: Int, inH: Int, inW: Int, outH: Int, outW: Int) -> [Float] {
    let wx = ResampleWeights.bicubic(inSize: inW, outSize: outW)
    let wy = ResampleWeights.bicubic(inSize: inH, outSize: outH)
    var tmp = [Double](repeating: 0, count: channels * inH * outW)
    for c in 0..<channels {
        for y in 0..<inH {
            for o in 0..<outW {
                var s = 0.0
                for j in 0..<wx.count[o] {
                    s += Double(src[(c * inH + y) * inW + wx.first[o] + j]) * wx.weights[o * wx.stride + j] }
                tmp[(c * inH + y) * outW + o] = s
            }
        }
    }
    var out = [Float](repeating: 0, count: channels * outH * outW)
    for c in 0..<channels {
        for o in 0..<outH {
            for x in 0..<outW {
                var s = 0.0
                for j in 0..<wy.count[o] {
                    s += tmp[(c * inH + wy.first[o] + j) * outW + x] * wy.weights[o * wy.stride + j] }
                out[(c * outH + o) * outW + x] = Float(s)
            }
        }
    }
    return out
}
