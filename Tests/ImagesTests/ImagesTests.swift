@testable import Images
import TestSupport
import VitLensCore
import XCTest

final class ResizeTests: XCTestCase {
    /// PIL's bicubic resize (down, up, one axis only) reproduced exactly: tolerance 0 levels.
    func testMatchesPILBicubic() throws {
        let src = try DecodedImage.load(path: Fixtures.golden("resize_src.png"))
        XCTAssertEqual([src.width, src.height], [81, 61])
        for (w, h) in [(37, 29), (120, 90), (81, 40), (50, 61)] {
            let want = try NpyArray(path: Fixtures.golden("resize_\(w)x\(h).npy"))
            XCTAssertEqual(want.shape, [h, w, 3])
            let got = resizeBicubicPIL(src, width: w, height: h)
            let r = compare(got.pixels.map(Double.init), want.values, tolerance: 0)
            XCTAssertEqual(r.violations, 0, "\(w)x\(h): \(r)")
        }
    }

    func testTimmEvalGeometryFollowsTorchvision() {
        // Resize(256) keeps the aspect ratio, long side truncated; CenterCrop rounds half to even.
        XCTAssertTrue(timmEvalGeometry(width: 640, height: 427, size: 224) == (383, 256, 80, 16))
        XCTAssertTrue(timmEvalGeometry(width: 427, height: 640, size: 224) == (256, 383, 16, 80))
        XCTAssertTrue(timmEvalGeometry(width: 500, height: 500, size: 224) == (256, 256, 16, 16))
        // 32/0.875 → 37; (45−32)/2 = 6.5 → 6
        XCTAssertTrue(timmEvalGeometry(width: 45, height: 37, size: 32) == (45, 37, 6, 2))
        XCTAssertTrue(timmEvalGeometry(width: 33, height: 32, size: 32) == (38, 37, 3, 2))  // (37−32)/2 = 2.5 → 2
    }
}

final class PreprocessTests: XCTestCase {
    /// The normalised tensors torchvision (PIL resize, ToTensor, Normalize) makes from the
    /// fixture images: PNG decoding and the PIL resize are exact, so the tolerance is float32
    /// rounding (1e-6); JPEG decoders of different libjpeg-turbo versions may differ by a level
    /// (1/255/0.225 ≈ 0.0175), so JPEGs get 0.02.
    func check(_ folder: String, _ golden: String, mode: ResizeMode) throws {
        let paths = try listImages(in: Fixtures.path("images/" + folder))
        let rel = paths.map { String($0.dropFirst(Fixtures.path("images/" + folder).count + 1)) }
        let want = try String(contentsOfFile: Fixtures.golden(golden + "_paths.txt"), encoding: .utf8).split(
            separator: "\n").map(String.init)
        XCTAssertEqual(rel, want, "listing order")
        let ref = try NpyArray(path: Fixtures.golden(golden + "_input.npy"))
        let batch = Tensor(shape: [paths.count, 3, 32, 32])
        let errors = loadBatch(paths, size: 32, mode: mode, into: batch)
        XCTAssertTrue(errors.allSatisfy { $0 == nil }, "\(errors)")
        let plane = 3 * 32 * 32
        for (i, p) in paths.enumerated() {
            let got = (0..<plane).map { Double(batch.data[i * plane + $0]) }
            let want = Array(ref.values[(i * plane)..<((i + 1) * plane)])
            let tol = p.hasSuffix(".jpg") ? 0.02 : 1e-6
            let r = compare(got, want, tolerance: tol)
            XCTAssertEqual(r.violations, 0, "\(p): \(r)")
        }
    }

    func testResizeNoneMatchesTorchvision() throws { try check("none", "none", mode: .none) }
    func testTimmEvalMatchesTorchvision() throws { try check("eval", "eval", mode: .timmEval) }

    /// Grey, RGBA and palette PNGs decode to the pixels PIL's convert("RGB") gives (alpha dropped,
    /// not composited; the palette looked up), every pixel of every load. Tolerance 0.
    func testGreyRGBAAndPaletteBecomeRGB() throws {
        let want = try NpyArray(path: Fixtures.golden("png_modes_pil.npy"))
        XCTAssertEqual(want.shape, [3, 32, 32, 3])
        let files = [
            "images/none/b_chelsea_grey.png", "images/none/c_coffee_rgba.png", "images/none/sub/d_rocket_palette.png"]
        let plane = 32 * 32 * 3
        for (k, file) in files.enumerated() {
            let img = try DecodedImage.load(path: Fixtures.path(file))
            XCTAssertEqual([img.width, img.height], [32, 32], file)
            let r = compare(
                img.pixels.map(Double.init), Array(want.values[(k * plane)..<((k + 1) * plane)]), tolerance: 0)
            XCTAssertEqual(r.violations, 0, "\(file): \(r)")
        }
        let grey = try DecodedImage.load(path: Fixtures.path(files[0]))
        for i in 0..<(32 * 32) {
            XCTAssertTrue(grey.pixels[3 * i] == grey.pixels[3 * i + 1] && grey.pixels[3 * i] == grey.pixels[3 * i + 2])
        }
    }

    /// 16-bit PNG: PIL keeps the high byte of each sample (libpng's simplified API would
    /// sRGB-encode what it takes for linear light; vitlens reads the raw samples). Tolerance 0.
    func testSixteenBitPNGMatchesPIL() throws {
        let img = try DecodedImage.load(path: Fixtures.golden("rgb16.png"))
        let want = try NpyArray(path: Fixtures.golden("rgb16_pil.npy"))
        XCTAssertEqual(want.shape, [8, 8, 3])
        let r = compare(img.pixels.map(Double.init), want.values, tolerance: 0)
        XCTAssertEqual(r.violations, 0, "\(r)")
    }

    func testBadImages() throws {
        let dir = NSTemporaryDirectory() + "vitlens-img-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "not an image".write(toFile: dir + "/text.jpg", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try DecodedImage.load(path: dir + "/text.jpg")) {
            e in XCTAssertTrue("\(e)".contains("text.jpg"), "\(e)") }
        let png = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/none/a_astronaut.png")))
        try png.prefix(png.count / 2).write(to: URL(fileURLWithPath: dir + "/cut.png"))
        XCTAssertThrowsError(try DecodedImage.load(path: dir + "/cut.png")) {
            e in XCTAssertTrue("\(e)".contains("cut.png"), "\(e)") }
        let jpg = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/eval/chelsea_45x37.jpg")))
        try jpg.prefix(jpg.count / 2).write(to: URL(fileURLWithPath: dir + "/cut.jpg"))
        XCTAssertThrowsError(try DecodedImage.load(path: dir + "/cut.jpg")) {
            e in XCTAssertTrue("\(e)".contains("cut.jpg"), "\(e)") }
        // A PNG header claiming 100000 x 100000 pixels is refused before decoding.
        var huge = [UInt8](png.prefix(33))
        for (o, v) in [(16, 100_000), (20, 100_000)] {
            for k in 0..<4 { huge[o + k] = UInt8(truncatingIfNeeded: v >> (8 * (3 - k))) } }
        try Data(huge).write(to: URL(fileURLWithPath: dir + "/huge.png"))
        XCTAssertThrowsError(try DecodedImage.load(path: dir + "/huge.png"))
        // --resize none refuses a wrong-size image, naming it.
        let img = try DecodedImage.load(path: Fixtures.path("images/eval/chelsea_45x37.jpg"))
        var out = [Float](repeating: 0, count: 3 * 32 * 32)
        XCTAssertThrowsError(try preprocess(img, size: 32, mode: .none, path: "x/chelsea.jpg", into: &out)) { e in
            XCTAssertTrue("\(e)".contains("x/chelsea.jpg: image is 45x37"), "\(e)")
        }
    }

    func testListingSkipsSymlinkLoopsAndSorts() throws {
        let dir = NSTemporaryDirectory() + "vitlens-list-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/b", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let png = Fixtures.path("images/none/a_astronaut.png")
        for name in ["b/z.PNG", "a.jpg", "B.png", "b/a.jpeg", "notes.txt"] {
            try FileManager.default.copyItem(atPath: png, toPath: dir + "/" + name)
        }
        try FileManager.default.createSymbolicLink(atPath: dir + "/b/loop", withDestinationPath: dir)
        let found = try listImages(in: dir).map { String($0.dropFirst(dir.count + 1)) }
        XCTAssertEqual(found, ["B.png", "a.jpg", "b/a.jpeg", "b/z.PNG"])  // byte order; the loop is entered once
        XCTAssertThrowsError(try listImages(in: dir + "/nope"))
    }
}

final class ImageMutationTests: XCTestCase {
    /// Damaged PNGs and JPEGs decode or fail with an error naming them — never crash.
    func testDecodersSurviveMutations() throws {
        var state: UInt64 = 21
        func next() -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: state >> 33)
        }
        for file in [
            "images/none/a_astronaut.png", "images/none/sub/d_rocket_palette.png", "images/eval/chelsea_45x37.jpg",
            "golden/rgb16.png"] {
            let src = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(file))))
            for i in 0..<400 {
                var b = src
                for _ in 0..<(1 + next() % 4) {
                    let at = (i % 2 == 0 ? next() % min(64, b.count) : next() % b.count)
                    switch next() % 4 {
                    case 0: b[at] ^= UInt8(1 << (next() % 8))
                    case 1: b.removeSubrange(max(1, next() % b.count)...)
                    case 2: b[at] = UInt8(truncatingIfNeeded: next())
                    default: b.insert(UInt8(truncatingIfNeeded: next()), at: at)
                    }
                }
                do {
                    let img = try b.withUnsafeBytes { try DecodedImage.decode($0, path: "m-\(i)") }
                    XCTAssertEqual(img.pixels.count, img.width * img.height * 3)
                } catch {
                    XCTAssertTrue("\(error)".hasPrefix("m-\(i)"), "\(error)")
                }
            }
        }
    }
}
