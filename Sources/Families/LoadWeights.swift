import Checkpoint
import Engine
import VitLensCore

/// A loaded checkpoint gives the engine its tensors, naming a missing, mis-shaped or non-finite
/// one as the checkpoint module does.
extension LoadedCheckpoint: WeightSource {
    public func has(_ name: String) -> Bool { tensors[name] != nil }

    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        guard let raw = tensors[name] else { throw CheckpointError.missingTensor(name) }
        guard raw.shape == shape else { throw CheckpointError.badShape(tensor: name, expected: shape, got: raw.shape) }
        let v = try raw.floats(name: name)
        if let bad = v.firstIndex(where: { !$0.isFinite }) {
            throw CheckpointError.nonFinite(tensor: name, index: bad, value: v[bad])
        }
        return Tensor(shape: shape, values: v)
    }

    public func integers(_ name: String, shape: [Int]) throws -> [Int]? {
        guard let raw = tensors[name] else { return nil }
        guard raw.shape == shape else { throw CheckpointError.badShape(tensor: name, expected: shape, got: raw.shape) }
        return try raw.integers(name: name)
    }
}

extension ViTWeights {
    /// Every tensor of the forward pass from a checkpoint, checked against the name table.
    public convenience init(checkpoint: LoadedCheckpoint, config: ViTConfig) throws {
        try self.init(source: checkpoint, config: config)
    }
}
