import VitLensCore

/// PIL's `Image.resize(size, BICUBIC)` on 8-bit images, reproduced step for step
/// (Pillow `libImaging/Resample.c`): weights from `ResampleWeights.bicubic`, converted to
/// 22-bit fixed point, horizontal pass first into an 8-bit intermediate, each pass rounded
/// and clipped to 0…255. Only the passes whose size changes are run, as PIL does.
public func resizeBicubicPIL(_ img: DecodedImage, width outW: Int, height outH: Int) -> DecodedImage {
    var cur = img
    if outW != cur.width { cur = horizontalPass(cur, outW) }
    if outH != cur.height { cur = verticalPass(cur, outH) }
    return cur
}

private let precisionBits = 32 - 8 - 2

private func fixedPoint(_ w: ResampleWeights) -> [Int32] {
    w.weights.map { v in
        v < 0 ? Int32(-0.5 + v * Double(1 << precisionBits)) : Int32(0.5 + v * Double(1 << precisionBits))
    }
}

@inline(__always) private func clip8(_ v: Int64) -> UInt8 {
    if v >= Int64(1) << (precisionBits + 8) { return 255 }
    if v <= 0 { return 0 }
    return UInt8(v >> Int64(precisionBits))
}

private func horizontalPass(_ img: DecodedImage, _ outW: Int) -> DecodedImage {
    let w = ResampleWeights.bicubic(inSize: img.width, outSize: outW)
    let k = fixedPoint(w)
    var out = [UInt8](repeating: 0, count: outW * img.height * 3)
    img.pixels.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            parallelChunks(img.height, minChunk: 16) { rows in
                for y in rows {
                    let row = src.baseAddress! + y * img.width * 3
                    for o in 0..<outW {
                        var s0 = Int64(1) << (precisionBits - 1), s1 = s0, s2 = s0
                        let first = w.first[o]
                        for j in 0..<w.count[o] {
                            let kk = Int64(k[o * w.stride + j])
                            let p = row + (first + j) * 3
                            s0 += Int64(p[0]) * kk; s1 += Int64(p[1]) * kk; s2 += Int64(p[2]) * kk
                        }
                        let d = dst.baseAddress! + (y * outW + o) * 3
                        d[0] = clip8(s0); d[1] = clip8(s1); d[2] = clip8(s2)
                    }
                }
            }
        }
    }
    return DecodedImage(width: outW, height: img.height, pixels: out)
}

private func verticalPass(_ img: DecodedImage, _ outH: Int) -> DecodedImage {
    let w = ResampleWeights.bicubic(inSize: img.height, outSize: outH)
    let k = fixedPoint(w)
    let rowLen = img.width * 3
    var out = [UInt8](repeating: 0, count: rowLen * outH)
    img.pixels.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            parallelChunks(outH, minChunk: 16) { rows in
                for o in rows {
                    let first = w.first[o]
                    for x in 0..<rowLen {
                        var s = Int64(1) << (precisionBits - 1)
                        for j in 0..<w.count[o] {
                            s += Int64(src[(first + j) * rowLen + x]) * Int64(k[o * w.stride + j])
                        }
                        dst[o * rowLen + x] = clip8(s)
                    }
                }
            }
        }
    }
    return DecodedImage(width: img.width, height: outH, pixels: out)
}

/// Crops a w×h window whose top-left corner is (left, top).
public func crop(_ img: DecodedImage, left: Int, top: Int, width: Int, height: Int) -> DecodedImage {
    var out = [UInt8](repeating: 0, count: width * height * 3)
    for y in 0..<height {
        for x in 0..<width {
            let sy = y + top, sx = x + left
            guard sy >= 0, sy < img.height, sx >= 0, sx < img.width else { continue }  // PIL pads with black
            for c in 0..<3 { out[(y * width + x) * 3 + c] = img.pixels[(sy * img.width + sx) * 3 + c] }
        }
    }
    return DecodedImage(width: width, height: height, pixels: out)
}
