import Checkpoint
@testable import Engine
import Foundation
import TestSupport
import VitLensCore
import XCTest

/// timm's rotary ViT (Tests/Fixtures/make_rope_fixtures.py: timm's Eva with RoPE-Axial, θ = 100,
/// 'xy' indexing) against timm in float64 on every attention path and worker split, at the
/// fixture's 32 px and, with the same weights, at 48 px (the rotary grid follows the run size).
final class RotaryTests: XCTestCase {
    func engine(size: Int) throws -> ViTEngine {
        let ckpt = try CheckpointLoader.load(path: Fixtures.checkpoint("family_ropevit.safetensors"))
        let config = try ViTConfig.infer(from: ckpt, imageSize: size)
        XCTAssertEqual(config.modelFamily, .ropeVit)
        XCTAssertEqual(config.rotary, RotarySpec(theta: 100))
        XCTAssertFalse(config.absolutePositions)
        return ViTEngine(weights: try ViTWeights(checkpoint: ckpt, config: config))
    }

    func testEveryPathMatchesTimm() throws {
        for (size, golden, input) in [(32, "family_ropevit", "none"), (48, "family_ropevit_size48", "size48")] {
            try checkEveryPath("rope-vit at \(size) px", input: try goldenInput(input, size: size), golden: golden) {
                try engine(size: size)
            }
        }
    }

    /// The table against its definition in float64: pair i < D/4 turns by column·θ^(−4i/D), pair
    /// D/4 + i by row·θ^(−4i/D); a rotation keeps each pair's length.
    func testTableAndRotation() throws {
        let spec = RotarySpec(theta: 100), g = 3, D = 8
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
