/// A way of comparing two layers' representations over the same images (docs/reference.md,
/// "`vitlens similarity`"). Each is defined once here and equals the peer named beside it.
public enum SimilarityMeasure: String, CaseIterable, Sendable, Comparable {
    case cka
    case ckaDebiased = "cka-debiased"
    case rbfCKA = "rbf-cka"
    case procrustes
    case cca
    case svcca
    case pwcca
    case mknn
    case rsa

    public static func < (a: Self, b: Self) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// How it is computed from the images' vectors.
    public enum Kind: Sendable {
        /// From minibatch Gram matrices, as `vitlens cka` (§5).
        case minibatch
        /// From float64 covariance sums streamed over minibatches: O(D²) memory, shards merge.
        case covariance
        /// From every image's vector at once (neighbours, RDMs, kernels over all N).
        case gram
    }

    public var kind: Kind {
        switch self {
        case .cka: return .minibatch
        case .ckaDebiased, .procrustes, .cca, .svcca, .pwcca: return .covariance
        case .rbfCKA, .mknn, .rsa: return .gram
        }
    }

    /// Whether a higher value means more similar (procrustes is an angle: 0 is identical).
    public var higherIsSimilar: Bool { self != .procrustes }

    /// Whether the measure is a CCA (needs full-rank centred features on both sides).
    public var isCCA: Bool { self == .cca || self == .pwcca }

    /// The quantity's name on a colour bar or axis.
    public var quantity: String {
        switch self {
        case .cka: return "CKA"
        case .ckaDebiased: return "debiased CKA"
        case .rbfCKA: return "RBF CKA"
        case .procrustes: return "Procrustes angle (rad)"
        case .cca: return "mean R² (CCA)"
        case .svcca: return "SVCCA"
        case .pwcca: return "PWCCA"
        case .mknn: return "mutual k-NN"
        case .rsa: return "RSA"
        }
    }

    /// One line: the definition.
    public var definition: String {
        switch self {
        case .cka:
            return "minibatch CKA with the unbiased HSIC (Nguyen et al. 2021), K and L with zeroed diagonals, "
                + "batches weighted equally — as vitlens cka"
        case .ckaDebiased:
            return "linear CKA over all N images with the unbiased HSIC (Song et al. 2012; Kornblith et al. 2019)"
        case .rbfCKA:
            return "CKA of RBF kernels exp(−‖x−y‖²/(2σ²)), σ² = t²·median of all N² squared distances; "
                + "biased HSIC (centred Grams)"
        case .procrustes:
            return "angular shape distance arccos(‖X̃ᵀỸ‖_* / (‖X̃‖_F‖Ỹ‖_F)) in radians: 0 is the same up to "
                + "rotation and scale"
        case .cca:
            return "mean squared canonical correlation ‖Q_XᵀQ_Y‖_F² / min(D_X, D_Y)"
        case .svcca:
            return "each side reduced to its fewest singular directions holding the --svcca-keep share of the "
                + "variance, then the mean canonical correlation"
        case .pwcca:
            return "canonical correlations weighted by each canonical variate's share of X's activity, "
                + "Σⱼ|⟨hᵢ, x̃ⱼ⟩| (Morcos et al. 2018)"
        case .mknn:
            return "mutual k-nearest-neighbour alignment (Huh et al. 2024): rows L2-normalised, cosine neighbours, "
                + "self excluded; mean over images of |N_A(i) ∩ N_B(i)| / k"
        case .rsa:
            return "representational similarity: RDM = 1 − Pearson correlation between images' vectors; the "
                + "two RDMs' upper triangles compared (Spearman by default)"
        }
    }

    /// The peer implementation it equals (docs/reference.md shows where a peer deviates).
    public var peer: String {
        switch self {
        case .cka: return "vitlens cka (mae-lite's rep_cmp_analyzer)"
        case .ckaDebiased: return "Kornblith et al.'s feature_space_linear_cka(debiased=True)"
        case .rbfCKA: return "Kornblith et al.'s cka(gram_rbf(x, t), gram_rbf(y, t))"
        case .procrustes: return "netrep LinearMetric(alpha=1, center_columns=True, score_method=\"angular\")"
        case .cca: return "Kornblith et al.'s cca on centred inputs"
        case .svcca: return "google/svcca cca_core.get_cca_similarity on the reduced, centred activations"
        case .pwcca:
            return "google/svcca pwcca.compute_pwcca with its canonical directions mapped back to the variates "
                + "(full_invsqrt_xx) and X's side always"
        case .mknn: return "platonic-rep AlignmentMetrics.mutual_knn"
        case .rsa: return "rsatoolbox calc_rdm(method=\"correlation\") and compare(method=…)"
        }
    }
}

/// How `rsa` compares two RDMs (rsatoolbox's `compare` methods).
public enum RDMComparison: String, CaseIterable, Sendable {
    case spearman
    case kendallTauA = "kendall-tau-a"
    case pearson
    case cosine

    /// rsatoolbox's name for it.
    public var rsatoolboxName: String {
        switch self {
        case .spearman: return "spearman"
        case .kendallTauA: return "tau-a"
        case .pearson: return "corr"
        case .cosine: return "cosine"
        }
    }
}
