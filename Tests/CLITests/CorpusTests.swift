import Foundation
import TestSupport
import VitLensCore
import XCTest

/// The hostile-input corpus (docs/reference.md, "Checkpoints", "Definitions", "Errors"): every case runs the built
/// binary and must end
/// with the expected exit code — never a signal or a trap — and, when it fails, exactly one
/// `error:` line naming the problem, no report folder, no staging folder, and (for pickles)
/// nothing executed. Cases are generated here from the fixtures (truncations, edited headers,
/// handmade pickles and zip archives) plus Tests/Fixtures/corpus (made by make_corpus.py).
final class CorpusTests: XCTestCase {
    var tmp = ""
    let tiny = Fixtures.checkpoint("tiny_f32.safetensors")
    let images = Fixtures.path("images/cka")
    var cases = 0

    override func setUpWithError() throws {
        tmp = NSTemporaryDirectory() + "vitlens-corpus-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func bytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }

    func file(_ name: String, _ b: [UInt8]) -> String {
        let p = tmp + "/" + name
        XCTAssertTrue(FileManager.default.createFile(atPath: p, contents: Data(b)), p)
        return p
    }

    /// Runs one case: `args` + `--out` (where the command has one), then the checks.
    func expect(
        _ args: [String], status: Int32 = 1, mentions: String, out: Bool = true, file: StaticString = #filePath,
        line: UInt = #line) {
        cases += 1
        let outDir = tmp + "/out-\(cases)"
        let r = runProcess(CLITests.binary, args + (out ? ["--out", outDir, "--quiet"] : []))
        XCTAssertFalse(r.signalled, "case \(cases) \(args): killed by a signal", file: file, line: line)
        XCTAssertEqual(r.status, status, "case \(cases) \(args): \(r.stderr)", file: file, line: line)
        guard status != 0 else { return }
        let lines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("notice:") && !$0.hasPrefix("warning:") }
        XCTAssertEqual(lines.count, 1, "case \(cases) \(args): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(
            r.stderr.hasPrefix("error: ") && r.stderr.contains(mentions),
            "case \(cases) \(args): '\(r.stderr)' should mention '\(mentions)'", file: file, line: line)
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: outDir), "case \(cases): partial report", file: file, line: line)
    }

    // MARK: helpers to make archives and pickles

    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
    func crc32(_ b: [UInt8]) -> UInt32 {
        ~b.reduce(~UInt32(0)) { CorpusTests.crcTable[Int(($0 ^ UInt32($1)) & 0xFF)] ^ ($0 >> 8) } }
    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 255), UInt8(v >> 8 & 255)] }
    func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(v >> (8 * $0) & 255) } }

    /// A zip archive of stored entries (method 0), or with `method`/`claimedSize` overridden.
    func zip(_ entries: [(String, [UInt8])], method: Int = 0, claimedSize: Int? = nil) -> [UInt8] {
        var out: [UInt8] = [], central: [UInt8] = []
        for (name, data) in entries {
            let n = Array(name.utf8), crc = Int(crc32(data)), offset = out.count
            let usize = claimedSize ?? data.count
            out += le32(0x0403_4B50) + le16(20) + le16(0) + le16(method) + le16(0) + le16(0) + le32(crc)
                + le32(data.count) + le32(usize) + le16(n.count) + le16(0) + n + data
            central += le32(0x0201_4B50) + le16(20) + le16(20) + le16(0) + le16(method) + le16(0) + le16(0) + le32(crc)
                + le32(data.count) + le32(usize)
                + le16(n.count) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0) + le32(offset) + n
        }
        let cdOffset = out.count
        return out + central + le32(0x0605_4B50) + le16(0) + le16(0) + le16(entries.count) + le16(entries.count)
            + le32(central.count) + le32(cdOffset) + le16(0)
    }

    /// A torch.save-shaped archive around a pickle.
    func torchArchive(_ pickle: [UInt8]) -> [UInt8] {
        zip([("archive/data.pkl", pickle), ("archive/byteorder", Array("little".utf8)),
            ("archive/version", Array("3\n".utf8))])
    }

    func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
    func unicode(_ s: String) -> [UInt8] { let b = Array(s.utf8); return [0x58] + le32(b.count) + b }

    // MARK: the corpus

    func testCorpus() throws {
        let good = bytes(tiny)
        let headerLen = Int(good[0]) | Int(good[1]) << 8 | Int(good[2]) << 16

        // safetensors: empty, truncated at every structural boundary, bad lengths, bad headers.
        expect(["inspect", file("empty.safetensors", []), "--json"], mentions: "empty.safetensors", out: false)
        for cut in [3, 8, 9, 8 + headerLen / 2, 8 + headerLen - 1, 8 + headerLen, 8 + headerLen + 5, good.count - 1] {
            expect(["inspect", file("cut\(cut).safetensors", Array(good.prefix(cut)))],
                mentions: "cut\(cut).safetensors", out: false)
        }
        expect(["inspect", file("long.safetensors", le32(good.count * 2) + [0, 0, 0, 0] + good.dropFirst(8))],
            mentions: "runs past the end", out: false)
        expect(["inspect", file("absurd.safetensors", [0, 0, 0, 0, 0, 0, 0, 0x10] + good.dropFirst(8))],
            mentions: "absurd", out: false)
        func st(_ name: String, _ header: String, data: Int = 16) -> String {
            var h = Array(header.utf8)
            while h.count % 8 != 0 { h.append(0x20) }
            return file(name, le32(h.count) + [0, 0, 0, 0] + h + [UInt8](repeating: 0, count: data))
        }
        expect(["inspect", st("notjson.safetensors", "{\"a\": [1, 2")], mentions: "not valid JSON", out: false)
        expect(["inspect", st("range.safetensors", #"{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}"#)],
            mentions: "run past the data", out: false)
        expect(["inspect",
            st("overlap.safetensors",
            #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"#
                + #""b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#)], mentions: "overlaps", out: false)
        expect(["inspect", st("mismatch.safetensors", #"{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,16]}}"#)],
            mentions: "needs 6", out: false)
        expect(["inspect", st("dtype.safetensors", #"{"a":{"dtype":"I4","shape":[4],"data_offsets":[0,16]}}"#)],
            mentions: "unknown dtype I4", out: false)
        expect(["inspect",
            st("dup.safetensors",
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
                + #""a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#)], mentions: "names tensor a twice",
            out: false)

        // zip / .pth: truncated, random, bad directory, deflated, a bomb.
        let pth = bytes(Fixtures.checkpoint("tiny_timm.pth"))
        for cut in [0, 4, 30, pth.count / 2, pth.count - 22, pth.count - 1] {
            expect(["inspect", file("cut\(cut).pth", Array(pth.prefix(cut)))], mentions: "cut\(cut).pth", out: false)
        }
        var rng = SplitMix64(seed: 5)
        expect(["inspect", file("random.pth", (0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) })],
            mentions: "random.pth", out: false)
        // A central directory whose entry headers are damaged (every "PK\u{1}\u{2}" signature).
        var badDir = pth
        for i in 0..<(badDir.count - 4) where badDir[i] == 0x50 && badDir[i + 1] == 0x4B && badDir[i + 2] == 1
            && badDir[i + 3] == 2 { badDir[i + 3] = 9 }
        expect(["inspect", file("baddir.pth", badDir)], mentions: "baddir.pth", out: false)
        expect(["inspect", Fixtures.checkpoint("tiny_timm_deflated.pth")], mentions: "compressed", out: false)
        // A bomb: a 1 KB deflated entry claiming 4 GB. Refused before anything is inflated.
        let bomb = zip([("archive/data.pkl", [UInt8](repeating: 0, count: 1024))], method: 8, claimedSize: 0xFFFF_FFF0)
        expect(["inspect", file("bomb.pth", bomb)],
            mentions: "bomb.pth: unsupported: zip entry archive/data.pkl is compressed", out: false)

        // Pickles: forbidden globals (and a marker proving nothing ran), REDUCE of a non-constructor,
        // nesting, memo abuse, storage mismatch.
        let marker = tmp + "/pwned"
        for (name, mod, fn) in [
            ("system", "posix", "system"), ("ossystem", "os", "system"), ("eval", "builtins", "eval"),
                                ("eval2", "__builtin__", "eval"), ("popen", "subprocess", "Popen"),
                                    ("counter", "collections", "Counter")] {
            let pkl: [UInt8] = [0x80, 0x02] + global(mod, fn) + unicode("touch \(marker)") + [0x85, 0x52, 0x2E]
            expect(["inspect", file("\(name).pth", torchArchive(pkl))], mentions: "'\(mod).\(fn)' is not allowed",
                out: false)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "a pickle executed something")
        let reduceStorage: [UInt8] = [0x80, 0x02] + global("torch", "FloatStorage") + [0x29, 0x52, 0x2E]
        expect(["inspect", file("reduce.pth", torchArchive(reduceStorage))], mentions: "reduce.pth", out: false)
        let deep: [UInt8] = [0x80, 0x02] + [UInt8](repeating: 0x5D, count: 200_000)
            + [UInt8](repeating: 0x61, count: 199_999) + [0x2E]
        expect(["inspect", file("deep.pth", torchArchive(deep))], mentions: "deep.pth", out: false)
        let memo: [UInt8] = [0x80, 0x02, 0x7D, 0x71, 0x00, 0x68, 0x07, 0x2E]  // BINGET of an index never put
        expect(["inspect", file("memo.pth", torchArchive(memo))], mentions: "memo", out: false)
        var memoFlood: [UInt8] = [0x80, 0x02, 0x4E]
        for i in 0..<100_000 { memoFlood += [0x72] + le32(i * 7919) }  // LONG_BINPUT everywhere
        expect(["inspect", file("memoflood.pth", torchArchive(memoFlood + [0x2E]))], mentions: "memoflood.pth",
            out: false)
        expect(["inspect", Fixtures.path("corpus/storage_short.pth")], mentions: "does not fit", out: false)
        expect(["inspect", Fixtures.checkpoint("evil_os_system.pth")], mentions: "is not allowed", out: false)

        // Well-formed, but not a usable ViT.
        expect(["inspect", Fixtures.path("corpus/cnn.safetensors")], mentions: "not a ViT", out: false)
        expect(["extract", Fixtures.path("corpus/vit_missing_qkv.safetensors"), "--images", images],
            mentions: "missing tensor blocks.1.attn.qkv.weight")
        expect(["extract", Fixtures.path("corpus/vit_bad_shape.safetensors"), "--images", images],
            mentions: "vit_bad_shape.safetensors: blocks.0.mlp.fc1.weight: expected [64, 16], got [32, 12]")
        expect(["cka", Fixtures.path("corpus/vit_nan.safetensors"), "--images", images],
            mentions: "blocks.1.norm2.weight: non-finite weight nan")
        expect(["attention", Fixtures.path("corpus/vit_inf.safetensors"), "--images", images],
            mentions: "pos_embed: non-finite weight inf")

        // Images, one bad file in an otherwise good folder.
        func folder(_ name: String, _ files: [(String, [UInt8])]) throws -> String {
            let d = tmp + "/" + name
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: images + "/00_astronaut.png", toPath: d + "/00_good.png")
            for (f, b) in files {
                XCTAssertTrue(FileManager.default.createFile(atPath: d + "/" + f, contents: Data(b)))
            }
            return d
        }
        let png = bytes(images + "/01_chelsea.png")
        let jpg = bytes(Fixtures.path("images/eval/rocket_50x50.jpg"))
        var huge = png
        for (k, v) in [(16, 100_000), (20, 100_000)] {
            let b = [
            UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)]; huge.replaceSubrange(
            k..<(k + 4), with: b) }
        let ihdrCRC = crc32(Array(huge[12..<29]))
        huge.replaceSubrange(
            29..<33, with: [
            UInt8(ihdrCRC >> 24 & 255), UInt8(ihdrCRC >> 16 & 255), UInt8(ihdrCRC >> 8 & 255), UInt8(ihdrCRC & 255)])
        for (name, content, mention) in [("cutpng", ("01_cut.png", Array(png.prefix(png.count / 2))), "01_cut.png"),
                                         ("cutjpg", ("01_cut.jpg", Array(jpg.prefix(jpg.count / 2))), "01_cut.jpg"),
                                         ("huge", ("01_huge.png", huge), "100000x100000"),
                                         ("text", ("01_text.jpg", Array("not an image\n".utf8)),
                                             "neither PNG nor JPEG"),
                                         ("zero", ("01_zero.png", []), "01_zero.png")] {
            expect(["extract", tiny, "--images", try folder(name, [content]), "--resize", "none"], mentions: mention)
        }
        let fifoDir = try folder("fifo", [])
        XCTAssertEqual(mkfifo(fifoDir + "/01_fifo.jpg", 0o644), 0)
        expect(["extract", tiny, "--images", fifoDir, "--resize", "none"], mentions: "not a regular file")
        // An unreadable file: permissions where they bind (root reads everything; the FIFO above
        // stands in for it there).
        if getuid() != 0 {
            let locked = try folder("locked", [("01_locked.png", png)])
            XCTAssertEqual(chmod(locked + "/01_locked.png", 0), 0)
            expect(["extract", tiny, "--images", locked, "--resize", "none"], mentions: "01_locked.png")
        }
        try FileManager.default.createDirectory(atPath: tmp + "/emptyimages", withIntermediateDirectories: true)
        expect(["cka", tiny, "--images", tmp + "/emptyimages"], mentions: "no PNG or JPEG images")
        // Handled, not refused: a symlink loop is entered once; CMYK JPEG, palette and 16-bit PNGs decode.
        let loop = try folder("loop", [])
        try FileManager.default.createSymbolicLink(atPath: loop + "/again", withDestinationPath: loop)
        let cmyk = try folder("cmyk", [("01_cmyk.jpg", bytes(Fixtures.path("corpus/cmyk.jpg"))),
                                        ("02_palette.png",
                                            bytes(Fixtures.path("images/none/sub/d_rocket_palette.png"))),
                                        ("03_rgb16.png", bytes(Fixtures.path("golden/rgb16.png")))])
        expect(["extract", tiny, "--images", loop, "--resize", "none"], status: 0, mentions: "")
        expect(["extract", tiny, "--images", cmyk, "--resize", "timm-eval"], status: 0, mentions: "")

        // Options.
        expect(["extract", tiny, "--images", images, "--num", "0"], status: 64, mentions: "--num")
        for b in ["0", "1", "3"] {
            expect(["cka", tiny, "--images", images, "--batch", b], status: 64, mentions: "--batch") }
        expect(["attention", tiny, "--images", images, "--heads", "3"], status: 64,
            mentions: "--heads 3 does not divide the embedding width 16")
        expect(["extract", tiny, "--images", images, "--batch", "5000"], status: 64, mentions: "--batch")
        let aFile = file("plainfile", [1])
        for bad in [aFile, aFile + "/sub", "/proc/vitlens-cannot-write"] {
            cases += 1
            let r = runProcess(CLITests.binary, ["attention", tiny, "--images", images, "--out", bad, "--quiet"])
            XCTAssertFalse(r.signalled)
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertTrue(
                r.stderr.hasPrefix("error: ") && r.stderr.contains(bad.replacingOccurrences(of: "/sub", with: "")),
                r.stderr)
        }
        // Model families: a relative position table of the wrong size, a stored index that is not
        // BEiT's, a CLIP state dict without visual.*, config.json files that contradict the
        // tensors (width, depth, patch, image size, an unknown activation).
        expect(["extract", Fixtures.checkpoint("family_rpe_badtable.safetensors"), "--images", images],
            mentions: "relative_position_bias_table: expected [52, 2], got [51, 2]")
        expect(["extract", Fixtures.checkpoint("family_rpe_badindex.safetensors"), "--images", images],
            mentions: "differs from the index BEiT builds")
        expect(["extract", Fixtures.checkpoint("family_clip_textonly.safetensors"), "--images", images],
            mentions: "a CLIP state dict without visual.*")
        for (file, says) in [
            ("family_swin", "windowed attention (Swin-style) is not supported"),
            ("family_hybrid", "a hybrid CNN stem is not supported"),
            ("family_rope", "rotary position embeddings"),
            ("family_swiglu", "a SwiGLU MLP beside a position table, with a k bias")] {
            expect(["extract", Fixtures.path("corpus/\(file).safetensors"), "--images", images], mentions: says)
        }
        // The 2025 families' own tensors, broken (make_corpus_2025.py): each named in one line.
        for (file, says) in [
            ("fb_mask_shape.pth", "blocks.0.attn.qkv.bias_mask: expected [48], got [5]"),
            ("fb_mask_value.pth", "bias_mask[0] is 0.5, not 0 or 1"),
            ("fb_periods.pth", "rope_embed.periods[1] is 7.0, but θ = 100 gives 10.0"),
            ("fb_missing_w2.pth", "missing tensor blocks.1.mlp.fc1_x.weight"),
            ("mixed_freqs_shape.safetensors", "rope.freqs: expected [2, 2, 2, 4], got [2, 2, 2, 3]"),
            ("mixed_freqs_nan.safetensors", "rope.freqs: non-finite weight nan"),
            ("mim_cos_shape.pt", "rope.freqs_cos has shape [3, 8]"),
            ("evaclip_missing_x.safetensors", "missing tensor blocks.0.mlp.fc1_x.weight"),
            ("evaclip_x_shape.safetensors", "blocks.0.mlp.fc1_x.weight: expected [42, 16], got [7, 16]"),
            ("siglip2_patch", "embeddings.patch_embedding.weight: expected [16, 768], got [16, 100]"),
            ("aimv2_positions", "pos_embed holds 3 rows"),
        ] {
            expect(["extract", Fixtures.path("corpus/families2025/" + file), "--images", images, "--heads", "2",
                    "--image-size", "32"], mentions: says)
        }
        let beit = Fixtures.checkpoint("family_hf_beit")
        let config = try String(contentsOfFile: beit + "/config.json", encoding: .utf8)
        for (key, from, to, says) in [("hidden_size", "16", "32", "hidden_size 32 but the weights hold 16"),
                                      ("num_hidden_layers", "2", "3", "num_hidden_layers 3 but the weights hold 2"),
                                      ("patch_size", "8", "4", "patch_size 4 but the weights hold 8"),
                                      ("image_size", "32", "64", "image_size 64 (8 patches a side)"),
                                      ("hidden_act", "\"gelu\"", "\"mish\"", "hidden_act 'mish' is not supported"),
                                      ("hidden_act", "\"gelu\"", "\"swish\"", "a plain MLP with silu")] {
            let folder = tmp + "/hf-\(key)-" + to.filter(\.isLetter)
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: beit + "/model.safetensors", toPath: folder + "/model.safetensors")
            let edited = config.replacingOccurrences(of: "\"\(key)\": \(from)", with: "\"\(key)\": \(to)")
            XCTAssertNotEqual(edited, config, key)
            try edited.write(toFile: folder + "/config.json", atomically: true, encoding: .utf8)
            expect(["extract", folder, "--images", images], mentions: says)
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: tmp).filter { $0.contains("vitlens-tmp") }
        XCTAssertEqual(leftovers, [], "staging folders left behind")
        print("corpus: \(cases) cases, each refused with one error line (or handled), no signal, no partial output")
        XCTAssertGreaterThanOrEqual(cases, 60)
    }
}
