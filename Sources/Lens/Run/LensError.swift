import Foundation
import VitLensCore

public let vitlensVersion = "0.1.0"

/// What a run can refuse: models and arrays that cannot be compared in one run, selections a
/// model cannot give, a run stopped by the user. Each case names the files and numbers involved.
public enum LensError: Error, CustomStringConvertible, Equatable {
    /// Two models that must run at one image size do not.
    case differentImageSizes(a: String, sizeA: Int, b: String, sizeB: Int)
    /// Patch-token CKA of two models with different token grids.
    case differentGrids(a: String, gridA: Int, b: String, gridB: Int)
    /// A 4-D feature array given without the number of its prefix (class/register) tokens.
    case prefixTokensNeeded(path: String)
    /// Attention probabilities whose patch size is unknown, for distances in pixels.
    case patchSizeNeeded(path: String)
    /// A class-token selection (`option`) on a model without a class token (SigLIP-style).
    case noClassToken(path: String, option: String)
    /// A class-token selection on a feature array whose tokens have no prefix.
    case noClassTokenInArray(path: String)
    /// A checkpoint among the sides, but no image folder.
    case modelNeedsImages
    /// An array whose image count differs from the folder's (`other` nil) or another array's.
    case rowCountMismatch(path: String, kind: ArrayKind, rows: Int, other: String?, otherRows: Int)
    /// --skip-bad-images beside arrays whose rows are the listed images.
    case skippingMisalignsRows(path: String)
    /// CKA over batches of which none has 4 images.
    case noFullMinibatch
    /// Two models of one probe with the same display name.
    case sameNames([String])
    /// More blocks to keep than the model has.
    case tooFewBlocks(path: String, depth: Int, keep: Int)
    /// A representation index outside 0…L.
    case noSuchRepresentation(path: String, depth: Int, index: Int)
    /// A colour range whose top is not above its bottom.
    case emptyColourRange(vmin: Double, vmax: Double)
    /// The run was stopped between two batches (Ctrl-C); nothing was written.
    case cancelled

    /// What an array holds, as error texts say it.
    public enum ArrayKind: String, Sendable {
        case features = "features"
        case attention = "the attention"
    }

    public var description: String {
        switch self {
        case let .differentImageSizes(a, sa, b, sb):
            return "\(a) runs at \(sa)px but \(b) at \(sb)px; both must run at one image size"
        case let .differentGrids(a, ga, b, gb):
            return "patch tokens can only be compared on one token grid: \(a) has \(ga)x\(ga) patches, \(b) \(gb)x\(gb)"
        case let .prefixTokensNeeded(path):
            return "\(path): an array of tokens needs the number of its prefix (class/register) tokens"
        case let .noClassToken(path, option):
            return "\(path) has no class token, so \(option) has nothing to take; use mean or patches"
        case let .noClassTokenInArray(path):
            return "\(path): no class token (0 prefix tokens) to compare with tokens cls"
        case let .patchSizeNeeded(path):
            return "\(path): distances in pixels need the patch size of the model the attention came from"
        case .modelNeedsImages:
            return "a model needs images to run on"
        case let .rowCountMismatch(path, kind, rows, other, otherRows):
            let source = other.map { "\($0) holds" } ?? "the image folder gives"
            return "\(path) holds \(kind.rawValue) of \(rows) images, but \(source) \(otherRows); "
                + "the rows must be the same images in the same order"
        case let .skippingMisalignsRows(path):
            return "skipping unreadable images would misalign the images with the rows of \(path)"
        case .noFullMinibatch:
            return "no minibatch of at least 4 images: CKA is undefined"
        case let .sameNames(names):
            return "two checkpoints have the same name (\(names.joined(separator: ", "))); rename one"
        case let .tooFewBlocks(path, depth, keep):
            return "\(path) has \(depth) blocks; cannot keep \(keep)"
        case let .noSuchRepresentation(path, depth, index):
            return "\(path) has representations 0…\(depth); there is no \(index)"
        case let .emptyColourRange(vmin, vmax):
            return "the colour range's top (\(vmax)) must be greater than its bottom (\(vmin))"
        case .cancelled:
            return "interrupted; nothing was written"
        }
    }
}

/// A feature or attention array (or extract folder) that cannot be used, and where.
public enum ArrayError: Error, CustomStringConvertible, Equatable {
    /// Features neither [L, N, T, D] nor [L, N, D].
    case featureRank(path: String, shape: [Int])
    /// Attention not [L, N, H, T, T] with T × T.
    case attentionShape(path: String, shape: [Int])
    case emptyAxis(path: String, shape: [Int])
    case prefixTokens(path: String, prefix: Int, tokens: Int)
    /// Tokens less prefix tokens that are not a square number of patches.
    case notSquareGrid(path: String, tokens: Int, prefix: Int)
    case nonFinite(path: String, value: Float, layer: Int, image: Int)
    /// A value outside [0, 1] in attention probabilities.
    case notProbability(path: String, value: Float, block: Int, image: Int, head: Int)
    /// A patch query whose probabilities put no weight on the patch keys.
    case noPatchWeight(path: String, query: Int, head: Int, block: Int, image: Int)
    case notExtractFolder(path: String)
    /// An extract folder without `file` (attention.npy of a --no-attention run).
    case extractLacks(path: String, file: String)

    public var description: String {
        switch self {
        case let .featureRank(path, shape):
            return "\(path): features must be [L, N, T, D] or [L, N, D], got \(shape.count) dimensions "
                + "\(formatShape(shape))"
        case let .attentionShape(path, shape):
            return "\(path): attention must be [L, N, H, T, T] (block, image, head, query, key), got "
                + "\(formatShape(shape))"
        case let .emptyAxis(path, shape): return "\(path): shape \(formatShape(shape)) has an empty axis"
        case let .prefixTokens(path, prefix, tokens):
            return "\(path): \(prefix) prefix tokens, but only \(tokens) tokens per image"
        case let .notSquareGrid(path, tokens, prefix):
            return "\(path): \(tokens) tokens less \(prefix) prefix tokens leave \(tokens - prefix) patches, "
                + "not a square grid"
        case let .nonFinite(path, value, layer, image):
            return "\(path): non-finite value \(value) in layer \(layer), image \(image)"
        case let .notProbability(path, value, block, image, head):
            return "\(path): \(value) is not a probability (block \(block), image \(image), head \(head))"
        case let .noPatchWeight(path, query, head, block, image):
            return "\(path): patch query \(query) of head \(head), block \(block), image \(image) "
                + "gives the patch keys no weight"
        case let .notExtractFolder(path):
            return "\(path): not a folder written by vitlens extract (no meta.json with architecture.prefix_tokens)"
        case let .extractLacks(path, file):
            return "\(path): the extract wrote no "
                + "\(file)\(file == "attention.npy" ? " (it ran with --no-attention)" : "")"
        }
    }
}

/// A report folder that cannot be read back (`plot`, `attention --compare-report`).
public enum ReportError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String)
    case notText(path: String)
    case noRows(path: String)
    case malformed(path: String, reason: String)
    /// Rows that do not fill the table they should: `shape` names it ("a 13×13 matrix").
    case rowCount(path: String, rows: Int, expected: Int, shape: String)
    case duplicatePair(path: String, i: Int, j: Int)
    case missingBox(path: String, metric: String, layer: Int)
    case missingFile(folder: String, file: String)
    case notAReport(path: String)
    /// A maps report, whose figure needs the images.
    case mapsNeedImages(path: String)

    public var description: String {
        switch self {
        case let .unreadable(path): return "\(path): cannot read"
        case let .notText(path): return "\(path): not UTF-8 text"
        case let .noRows(path): return "\(path): no rows"
        case let .malformed(path, reason): return "\(path): \(reason)"
        case let .rowCount(path, rows, expected, shape): return "\(path): \(rows) rows, \(shape) needs \(expected)"
        case let .duplicatePair(path, i, j): return "\(path): pair (\(i), \(j)) appears twice"
        case let .missingBox(path, metric, layer): return "\(path): no \(metric) box for layer \(layer)"
        case let .missingFile(folder, file): return "\(folder): no \(file) there"
        case let .notAReport(path):
            return "\(path): no cka.csv, attention.csv or probe.csv; not a vitlens report folder"
        case let .mapsNeedImages(path):
            return "\(path): a maps report; its figure is drawn over the images by `vitlens maps` "
                + "(the report does not store them), run it again with --out"
        }
    }
}

/// Shards that cannot be merged into one report.
public enum MergeError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String)
    case malformed(path: String, reason: String)
    case notPartial(path: String)
    case noShards
    case differentCommands(path: String, command: String, first: String)
    case differentSplits(path: String, shard: String, count: Int, first: Int)
    case differentSetup(path: String, first: String)
    case duplicate(shard: String)
    case missing([String])
    /// A partial.json without a field its command needs.
    case missingField(String)
    case unknownCommand(String)

    public var description: String {
        switch self {
        case let .unreadable(path): return "\(path): cannot read (is it the folder of a sharded run?)"
        case let .malformed(path, reason): return "\(path): \(reason)"
        case let .notPartial(path): return "\(path): not a vitlens partial.json"
        case .noShards: return "no shards to merge"
        case let .differentCommands(path, command, first):
            return "\(path): a \(command) shard cannot merge with a \(first) shard"
        case let .differentSplits(path, shard, count, first):
            return "\(path): shard \(shard) of a \(count)-way split, others are \(first)-way"
        case let .differentSetup(path, first):
            return "\(path): its models, images or definitions differ from \(first)'s; shards must come from one "
                + "command line"
        case let .duplicate(shard): return "shard \(shard) given twice"
        case let .missing(shards): return "missing shard(s) " + shards.joined(separator: ", ")
        case let .missingField(what): return "partial.json: \(what)"
        case let .unknownCommand(c): return "unknown command '\(c)' in partial.json"
        }
    }
}
