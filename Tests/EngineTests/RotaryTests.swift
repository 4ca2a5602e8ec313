import Checkpoint
@testable import Engine
@testable import Families
import Foundation
import TestSupport
import VitLensCore
import XCTest

/// timm's rotary ViT and DINOv3 (Tests/Fixtures/make_rope_fixtures.py: timm's Eva) against timm
/// in float64 on every attention path and worker split, at the fixtures' 32 px and, with the same
/// weights, at 48 px (the rotary grid follows the run size).
final class RotaryTests: XCTestCase {
    func engine(_ name: String, size: Int) throws -> ViTEngine {
        let ckpt = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("family_\(name).safetensors"))
        let config = try ViTConfig.infer(from: ckpt, imageSize: size)
        let family: [String: (String, RotarySpec)] = [
            "ropevit": ("rope-vit", .timmAxial), "dinov3": ("dinov3", .dinov3),
            "ropereggap": ("rope-vit-gap", .timmRegGap(trainedGrid: 4)),
            "ropemixed": ("rope-vit-mixed", .timmMixed),
        ]
        XCTAssertEqual(config.modelFamily.rawValue, family[name]?.0)
        XCTAssertEqual(config.rotary, family[name]?.1)
        XCTAssertFalse(config.absolutePositions)
        if name == "dinov3" {
            XCTAssertEqual(config.eps, 1e-5)
            XCTAssertEqual(config.registers, 4)
            XCTAssertFalse(config.qkvBias)
        }
        return ViTEngine(weights: try ViTWeights(checkpoint: ckpt, config: config))
    }

    func testEveryPathMatchesTimm() throws {
        for name in ["ropevit", "dinov3", "ropereggap", "ropemixed"] {
            for (size, suffix, input) in [(32, "", "none"), (48, "_size48", "size48")] {
                try checkEveryPath("\(name) at \(size) px", input: try goldenInput(input, size: size),
                                   golden: "family_\(name)\(suffix)") { try engine(name, size: size) }
            }
        }
    }

    /// DINOv3's table: pair i < D/4 turns by y·θ^(−4i/D), D/4 + i by x, with y and x the patch
    /// centres normalised to [−1, 1] times 2π; pairs are (i, i + D/2).
    func testDINOv3Table() throws {
        let g = 4, D = 8
        let table = RotarySpec.dinov3.table(grid: g, headDim: D)
        XCTAssertTrue(table.halfSplit)
        for row in 0..<g {
            for col in 0..<g {
                for i in 0..<(D / 2) {
                    let k = i % (D / 4), position = i < D / 4 ? row : col
                    let angle = 2 * Double.pi * (2 * (Double(position) + 0.5) / Double(g) - 1)
                        * pow(100, -4 * Double(k) / Double(D))
                    XCTAssertEqual(Double(table.cos[(row * g + col) * D / 2 + i]), cos(angle), accuracy: 1e-6)
                    XCTAssertEqual(Double(table.sin[(row * g + col) * D / 2 + i]), sin(angle), accuracy: 1e-6)
                }
            }
        }
        // Half-split pairs: turning q of one head by its table and back gives q again; pair i
        // is (i, i + 4) and keeps its length.
        let T = 1 + g * g, C = 8
        var qkv = (0..<(T * 3 * C)).map { Float(cos(Double($0) * 0.61)) }
        let before = qkv
        qkv.withUnsafeMutableBufferPointer {
            applyRotary($0.baseAddress!, rows: 0..<T, tokens: T, prefix: 1, dim: C, heads: 1, table: table)
        }
        let r = 6
        for i in 0..<4 {
            let j = r * 3 * C + i
            XCTAssertEqual(hypot(Double(qkv[j]), Double(qkv[j + 4])), hypot(Double(before[j]), Double(before[j + 4])),
                           accuracy: 1e-6)
        }
        qkv.withUnsafeMutableBufferPointer {
            applyRotary(
                $0.baseAddress!, rows: 0..<T, tokens: T, prefix: 1, dim: C, heads: 1, table: table, inverse: true)
        }
        for (a, b) in zip(qkv, before) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    }

    /// The table against its definition in float64: pair i < D/4 turns by column·θ^(−4i/D), pair
    /// D/4 + i by row·θ^(−4i/D); a rotation keeps each pair's length.
    func testTableAndRotation() throws {
        let spec = RotarySpec.timmAxial, g = 3, D = 8
        let table = spec.table(grid: g, headDim: D)
        for row in 0..<g {
            for col in 0..<g {
                for i in 0..<(D / 2) {
                    let k = i % (D / 4), coordinate = i < D / 4 ? col : row
                    let angle = Double(coordinate) * pow(100, -4 * Double(k) / Double(D))
                    XCTAssertEqual(Double(table.cos[(row * g + col) * D / 2 + i]), cos(angle), accuracy: 1e-7)
                    XCTAssertEqual(Double(table.sin[(row * g + col) * D / 2 + i]), sin(angle), accuracy: 1e-7)
                }
            }
        }
        // One image of 1 prefix + 9 patches, C = 16 (2 heads): the prefix row is untouched, v is
        // untouched, every q and k pair keeps its length.
        let T = 10, C = 16
        var qkv = (0..<(T * 3 * C)).map { Float(sin(Double($0) * 0.37)) }
        let before = qkv
        qkv.withUnsafeMutableBufferPointer {
            applyRotary($0.baseAddress!, rows: 0..<T, tokens: T, prefix: 1, dim: C, heads: 2, table: table)
        }
        XCTAssertEqual(Array(qkv[0..<(3 * C)]), Array(before[0..<(3 * C)]), "the class token is not turned")
        for r in 1..<T {
            XCTAssertEqual(Array(qkv[(r * 3 * C + 2 * C)..<((r + 1) * 3 * C)]),
                           Array(before[(r * 3 * C + 2 * C)..<((r + 1) * 3 * C)]), "v is not turned")
            for j in stride(from: r * 3 * C, to: r * 3 * C + 2 * C, by: 2) {
                let a = hypot(Double(before[j]), Double(before[j + 1])), b = hypot(Double(qkv[j]), Double(qkv[j + 1]))
                XCTAssertEqual(a, b, accuracy: 1e-6)
            }
        }
        // Patch 0 (row 0, column 0) has angle 0: unchanged.
        XCTAssertEqual(Array(qkv[(3 * C)..<(3 * C + 2 * C)]), Array(before[(3 * C)..<(3 * C + 2 * C)]))
    }
}
