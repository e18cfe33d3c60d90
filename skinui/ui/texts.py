"""Plain-language texts of the app: fusion methods and structures for teachers, the About page.

Descriptions are keyed by the registry names of `skinui.models.fusion.FUSIONS` and
`skinui.models.structures.STRUCTURES`, so a new method only needs one entry here (a test checks
that every registered name has one). Equations use the symbols of the JI-ADF paper:
f_I image features, f_M metadata features, f_J the fused (joint) features.
"""
from __future__ import annotations

PREDICTED = "predicted class"  # class pickers: explain the predicted class

NOTICE_SHORT = "Research and teaching tool, not a medical device: not a diagnosis, not for decisions about care."

NOT_A_MEDICAL_DEVICE = (
    "**SkinUI is a research and teaching tool, not a medical device.** Its outputs are not a "
    "diagnosis and must not be used to make decisions about any person's care."
)

FUSION_TEXTS: dict[str, tuple[str, str]] = {
    "concat": (
        "Concatenation: the image and metadata feature vectors are laid end to end and the "
        "classifier learns from both at once. The simplest baseline.",
        "f_J = [f_I ; f_M]",
    ),
    "weighted_concat": (
        "Weighted concatenation: like concatenation, but each modality is first multiplied by a "
        "learned scalar weight, so the network can turn a modality up or down as a whole.",
        "f_J = [w_I · f_I ; w_M · f_M]",
    ),
    "hadamard": (
        "Hadamard (element-wise) product: both vectors are projected to the same width and "
        "multiplied position by position, so a feature only counts when both modalities agree.",
        "f_J = (W_I f_I) ⊙ (W_M f_M)",
    ),
    "tensor": (
        "Tensor fusion: the outer product of the two (projected) vectors, each extended by a 1, "
        "holds every pairwise interaction of an image feature with a metadata feature plus the "
        "originals; the width is bounded by projecting first.",
        "f_J = vec([W_I f_I ; 1] ⊗ [W_M f_M ; 1])",
    ),
    "bilinear": (
        "Bilinear pooling: each output feature is a learned weighted sum of products of image and "
        "metadata features; a low-rank factorisation keeps it small.",
        "f_J,k = f_Iᵀ W_k f_M ≈ 1ᵀ (U_kᵀ f_I ⊙ V_kᵀ f_M)",
    ),
    "gated": (
        "Gated fusion: a learned gate between 0 and 1 decides, feature by feature, how much comes "
        "from the image and how much from the metadata.",
        "g = σ(W [f_I ; f_M]),  f_J = g ⊙ x + (1 − g) ⊙ y,  x = tanh(W_x f_I), y = tanh(W_y f_M)",
    ),
    "self_attention": (
        "Self-attention over modality tokens: each modality becomes one token and a transformer "
        "layer lets every token look at the others before they are pooled.",
        "T = [f_I, f_M],  f_J = pool(softmax(Q Kᵀ / √d) V)",
    ),
    "cross_attention": (
        "Cross-attention: image features ask questions (queries) of the metadata (keys, values) "
        "and the metadata asks questions of the image; the two answers are combined.",
        "f_J = [Attn(Q_I, K_M, V_M) ; Attn(Q_M, K_I, V_I)]",
    ),
    "metablock": (
        "MetaBlock (Pacheco & Krohling): the metadata produces a scale and a shift that modulate "
        "groups of image features, so the patient context decides which visual cues matter.",
        "f_J = σ(tanh(f_b(f_M) ⊙ f_I) + g_b(f_M))",
    ),
    "metanet": (
        "MetaNet: the metadata produces a multiplicative gate (a 1×1 convolution and a sigmoid) "
        "applied channel by channel to the image features.",
        "f_J = σ(W_2 ReLU(W_1 f_M)) ⊙ f_I",
    ),
    "mmfa": (
        "MMFA (JI-ADF's multimodal fusion attention): each modality is projected to queries, keys "
        "and values; a two-token multi-head attention mixes them; the result is added to a direct "
        "(skip) projection of both feature vectors.",
        "o = MHA(Q, K, V) over {f_I, f_M},  f_J = g(o) + W_skip [f_I ; f_M]",
    ),
    "mmfa_tang": (
        "MMFA as Tang et al. first wrote it: each modality goes through a linear layer and batch "
        "normalisation that give its query, key and value; the metadata token comes first; a "
        "multi-head attention mixes the two tokens, a linear layer and batch normalisation bring the "
        "result back to the width of both inputs, and the inputs themselves are added unchanged. "
        "Unlike JI-ADF's MMFA, there is no learned skip projection and the fused vector keeps the full "
        "width of the image and metadata features.",
        "[Q;K;V]_m = BN(W_m f_m),  o = MHA over {f_M, f_I},  f_J = BN(W_o o) + [f_I ; f_M]",
    ),
    "projected_add": (
        "Projected addition (TDBN): the metadata features are mapped by one linear layer to the width "
        "of the image features and added to them, so the metadata shifts the image representation.",
        "f_J = f_I + W f_M",
    ),
}

STRUCTURE_TEXTS: dict[str, tuple[str, str]] = {
    "late": (
        "Late (decision-level) fusion: the images and the metadata each get their own classifier, "
        "and a linear layer combines the two sets of logits into the decision; the features never "
        "meet, so there is no fusion module. With one modality it is that modality's classifier.",
        "P = softmax(W [h_I(f_I) ; h_M(f_M)])",
    ),
    "jf": (
        "Joint fusion (JF): one fusion module combines image and metadata features and one "
        "classifier head reads the joint features.",
        "P = softmax(h_J(f_J))",
    ),
    "jif": (
        "Joint-individual fusion (JIF): besides the joint head, the image and the metadata each get "
        "their own classifier head trained with auxiliary losses; the three predictions are averaged "
        "(Tang's \"All\"), or an entry decides from the joint head alone (Tang's \"OFB\"; its card says which).",
        "L = L_IM + 0.5 L_I + 0.5 L_M,  P = (P_I + P_IM + P_M) / 3  (All)  or  P = P_IM  (OFB)",
    ),
    "jiadf": (
        "JI-ADF (joint-individual fusion with adaptive decision fusion): like JIF, but a small "
        "gating network looks at all three heads' logits and decides, case by case, how much to "
        "trust each; the weights alpha are shown on the Prediction tab.",
        "α = softmax(MLP([z_I ; z_IM ; z_M])),  P = α_I P_I + α_IM P_IM + α_M P_M",
    ),
    "dualrefnet": (
        "DualRefNet (dual-stage feature refinement): the photo is colour-corrected (Shades of Gray) and "
        "contrast-equalised (CLAHE) first. While it trains, a decoder must rebuild the photo at twice its "
        "size from the image features, which pushes the encoder to keep fine detail; that decoder is "
        "thrown away afterwards, so it never touches a prediction. Image and metadata features are "
        "concatenated and go through two fully connected layers, whose weights are held small in "
        "proportion to how common each class is, and rare classes count more in the loss.",
        "L = 0.5 CE_w(P, y) + 1.0 MSE(D(F_I), 2×image) + 1.0 λ(Σ_k f_k |W2_k| + Σ_u g_u |W1_u|),  "
        "P = softmax(W2 ReLU(W1 [f_I ; f_M]))",
    ),
    "tdbn": (
        "TDBN (dual-network attention with lesion segmentation): a segmentation network first outlines "
        "the lesion; one image encoder reads the photo, a second reads the photo with everything outside "
        "the outline blacked out. Cross-attention lets the outlined lesion decide where to look: its "
        "features give the keys, the full photo gives the queries and the values. The metadata is added "
        "to the pooled result, and three fully connected layers decide. The predicted outline is shown "
        "next to Grad-CAM.",
        "Z = MHA(Q = T_x W_q, K = T_{x⊙M} W_k, V = T_x W_v),  f_I = mean(LN(Z + FFN(Z))),  "
        "P = softmax(MLP_{512,128}(f_I + W f_M))",
    ),
    "member_average": (
        "Ensemble of fusion heads: the image is read by several encoders trained apart; each gets its own "
        "fusion with the metadata and its own classifier, trained on its own, and their probabilities are "
        "averaged. Encoders trained apart make different mistakes, which averaging cancels.",
        "P = (1/K) Σ_k softmax(h_k(fuse_k(f_I^(k), f_M)))",
    ),
    "product": (
        "Bayes' rule (product of experts): an image-only model and a metadata-only model, each trained and "
        "calibrated on its own, are multiplied. If the photo and the patient's details are independent once "
        "the diagnosis is known, this is exactly how the two pieces of evidence combine; dividing by how "
        "common each diagnosis is stops its base rate from being counted twice. Nothing is learned about how "
        "to mix them, so there is nothing to overfit; a case without metadata gets the image model alone.",
        "P(y | x, m) ∝ P(y | x) · P(y | m) / P(y)",
    ),
    "fusionm4net": (
        "FusionM4Net (two stages): first, FusionNet reads the clinical and the dermoscopic image with "
        "their own encoders, adds the two feature vectors, and has three classifiers (clinical, "
        "dermoscopic, and the sum), whose predictions are mixed with weights chosen on validation. Then "
        "a support vector machine reads the metadata (one column per answer) next to that prediction, "
        "and the two stages' predictions are mixed again with weights chosen on validation. The SVM is "
        "computed in the model itself, so Grad-CAM explains the final prediction.",
        "f_F = f_C + f_D,  P1 = w_C P_C + w_D P_D + w_F P_F,  P2 = SVM_RBF([metadata ; P1]),  "
        "P = w1 P1 + w2 P2",
    ),
    "ammfm": (
        "AMMFM (asymmetric multimodal fusion): the clinical and the dermoscopic image each have an encoder. "
        "At two depths, the clinical photo's features decide where to look: they form an attention map "
        "over positions that regathers (refines) the dermoscopic features, which are kept as well (a "
        "residual). Never the other way round: the overview steers the close-up. Three classifiers "
        "(clinical, dermoscopic, and the refined features with the metadata) are trained together, and "
        "their predictions are mixed with weights chosen on validation.",
        "A_s = softmax((W_q X_C)^T (W_k X_C) / √d),  Y_s = W_v X_D + (W_v X_D) A_s^T,  "
        "P = w_C P_C + w_D P_D + w_F softmax(h_F([GAP(Y_1) ; GAP(Y_2) ; f_M]))",
    ),
    "pemm": (
        "PEMM: one encoder, with the same weights, reads both the clinical and the dermoscopic image. "
        "Cross-attention then lets each image's features look at the other's, using one set of "
        "projections for both directions. Clinical, dermoscopic and fused classifiers are trained "
        "together, the loss leaning on the fused (0.5) and the dermoscopic (0.4) one more than on the "
        "clinical one (0.1); the fused classifier gives the prediction.",
        "Z_C = LN(T_C W_v + softmax(T_C W_q (T_D W_k)^T/√d) T_D W_v) (and Z_D swapped),  "
        "L = 0.1 L_C + 0.4 L_D + 0.5 L_F,  P = softmax(h_F([Z̄_C ; Z̄_D ; f_M]))",
    ),
}

MISSING_MODALITY = (
    "When a case lacks a modality the model uses, that branch receives the learned *missing* "
    "embedding the model saw during training (modality dropout), so the prediction rests on the "
    "remaining inputs. Expect it to be less certain, and compare on the Modality ablation tab."
)

HOW_TO_GET_ENTRIES = (
    "No model entries are installed in `{weights}`. Entries are pairs `<name>.safetensors` + "
    "`<name>.json` (model card). Train one with `python -m training fit --config "
    "training/configs/NAME.yaml --out weights/`, copy shipped weights into that folder, or point "
    "the app at another folder with the `SKINUI_WEIGHTS` environment variable; then restart the app."
)

LIMITS = (
    "Limits: the models were trained on public research datasets (or on the synthetic SynthDerm "
    "benchmark) whose patients, cameras and skin tones do not represent every population; their "
    "probabilities are calibrated on a held-out split of the same data, not on your images. "
    "Explanations (Grad-CAM, feature relevance) show what the model used, not what is medically right."
)


# Where each method comes from: (short label for tables, full reference). Checked against the papers'
# own titles and venues; a method without a single source paper says so rather than citing a guess.
PAPERS: dict[str, dict[str, tuple[str, str]]] = {
    "fusion": {
        "concat": ("Kawahara et al. 2019", "Kawahara J., Daneshvar S., Argenziano G., Hamarneh G. Seven-point "
                   "checklist and skin lesion classification using multitask multimodal neural nets. IEEE JBHI "
                   "23(2), 2019 (concatenation as the common baseline)."),
        "weighted_concat": ("SkinUI baseline", "No single source paper: concatenation with one learnable weight "
                            "per modality, a SkinUI baseline between concat and the gated unit."),
        "hadamard": ("Kim et al. 2017", "Kim J.-H., On K.-W., Lim W., Kim J., Ha J.-W., Zhang B.-T. Hadamard "
                     "product for low-rank bilinear pooling. ICLR 2017."),
        "tensor": ("Zadeh et al. 2017", "Zadeh A., Chen M., Poria S., Cambria E., Morency L.-P. Tensor fusion "
                   "network for multimodal sentiment analysis. EMNLP 2017."),
        "bilinear": ("Tenenbaum & Freeman 2000; Kim et al. 2017", "Tenenbaum J.B., Freeman W.T. Separating style "
                     "and content with bilinear models. Neural Computation 12(6), 2000; the low-rank form as in Kim "
                     "et al., ICLR 2017."),
        "gated": ("Arevalo et al. 2017", "Arevalo J., Solorio T., Montes-y-Gómez M., González F.A. Gated "
                  "multimodal units for information fusion. ICLR 2017 workshop."),
        "self_attention": ("Vaswani et al. 2017", "Vaswani A. et al. Attention is all you need. NeurIPS 2017 "
                           "(applied here to the two modality tokens)."),
        "cross_attention": ("Lu et al. 2019", "Lu J., Batra D., Parikh D., Lee S. ViLBERT: pretraining "
                            "task-agnostic visiolinguistic representations for vision-and-language tasks. NeurIPS "
                            "2019 (co-attention between modalities)."),
        "metablock": ("Pacheco & Krohling 2021", "Pacheco A.G.C., Krohling R.A. An attention-based mechanism to "
                      "combine images and metadata in deep learning models applied to skin cancer classification. "
                      "IEEE JBHI 25(9), 2021."),
        "metanet": ("Li et al. 2020", "Li W., Zhuang J., Wang R., Zhang J., Zheng W.-S. Fusing metadata and "
                    "dermoscopy images for skin disease diagnosis. ISBI 2020."),
        "mmfa": ("Tang et al. 2024", "Tang P., Yan X., Nan Y., Hu X., Menze B.H., Krammer S., Lasser T. "
                 "Joint-individual fusion structure with fusion attention module for multi-modal skin cancer "
                 "classification. Pattern Recognition 154, 110604, 2024, in the form JI-ADF gives it (Nguyen P. et "
                 "al., arXiv:2604.27343, 2026, eq. 8-11); Tang's own form is mmfa_tang."),
        "mmfa_tang": ("Tang et al. 2024", "Tang P., Yan X., Nan Y., Hu X., Menze B.H., Krammer S., Lasser T. "
                      "Joint-individual fusion structure with fusion attention module for multi-modal skin cancer "
                      "classification. Pattern Recognition 154, 110604, 2024."),
        "projected_add": ("TDBN", "The fusion of the TDBN paper (dual-network attention with lesion segmentation, "
                          "evaluated on HAM10000 and ISIC 2019); authors and venue were not checked in this "
                          "repository."),
    },
    "structure": {
        "late": ("decision-level fusion", "No single source paper: the classic decision-level (late) fusion "
                 "baseline."),
        "jf": ("joint fusion", "No single source paper: joint (feature-level) fusion, the structure most fusion "
               "modules above were published in."),
        "jif": ("Tang et al. 2024", "Tang P. et al. Joint-individual fusion structure with fusion attention module "
                "for multi-modal skin cancer classification. Pattern Recognition 154, 110604, 2024."),
        "jiadf": ("Nguyen et al. 2026", "Nguyen P., Cao D., Kha H., Chu H., Le M., Pham T., Le N.Q.K. JI-ADF: "
                  "joint-individual learning with adaptive decision fusion for multimodal skin lesion "
                  "classification. arXiv:2604.27343, 2026."),
        "dualrefnet": ("DualRefNet 2025", "Multimodal dual-stage feature refinement for robust skin lesion "
                       "classification (DualRefNet), 2025, evaluated on PAD-UFES-20 and ISIC 2019; authors and "
                       "venue were not checked in this repository."),
        "tdbn": ("TDBN", "Dual-network attention with lesion segmentation (TDBN), evaluated by its authors on "
                 "HAM10000 and ISIC 2019; authors and venue were not checked in this repository."),
        "fusionm4net": ("FusionM4Net", "FusionM4Net, a multi-stage multi-modal network (clinical and dermoscopic "
                        "images, metadata; evaluated by its authors on Derm7pt), the dissertation's chapter 6; "
                        "authors and venue were not checked in this repository."),
        "ammfm": ("AMMFM", "AMMFM, asymmetric multimodal fusion of clinical and dermoscopic images, the "
                  "dissertation's chapter 5; authors and venue were not checked in this repository."),
        "pemm": ("PEMM", "PEMM, a weight-shared encoder with shared-projection cross-attention for clinical and "
                 "dermoscopic images, the dissertation's chapter 5; authors and venue were not checked in this "
                 "repository."),
        "product": ("Bayes' rule", "No single source paper: the naive-Bayes combination of independently "
                    "calibrated single-modality classifiers (a product of experts, Hinton 2002, with the class "
                    "prior divided out once), SkinUI's training-free late fusion (docs/RESULTS.md, HAM10000)."),
        "member_average": ("SkinUI", "No source paper: SkinUI's ensemble of per-encoder fusion heads "
                           "(docs/BENCHMARKS.md, training levers)."),
    },
}


def paper(kind: str, name: str) -> str:
    """Short source label of a fusion method or structure (for a table row)."""
    return PAPERS.get(kind, {}).get(name, ("", ""))[0]


def describe(kind: str, name: str) -> str:
    """Markdown description + equation + source of a fusion method or structure by registry name."""
    table = FUSION_TEXTS if kind == "fusion" else STRUCTURE_TEXTS
    if name not in table:
        return f"`{name}`: no description yet."
    text, equation = table[name]
    source = PAPERS.get(kind, {}).get(name)
    return f"{text}\n\n`{equation}`" + (f"\n\n*Source:* {source[1]}" if source else "")


def decision_words(probabilities: dict[str, float], prediction: str) -> str:
    """'' when the decided class is the most probable one; else the plain sentence on why it is not."""
    from skinui.inference import decision_note

    top = max(probabilities, key=probabilities.get)
    return "" if top == prediction else decision_note(top, probabilities[top], prediction)


def decision_headline(probabilities: dict[str, float], prediction: str) -> str:
    """'mel (P 39%; most probable: nv 53%)' or 'nv at 53%': never a winner's number that is not the winner's."""
    top = max(probabilities, key=probabilities.get)
    p = probabilities[prediction]
    if top == prediction:
        return f"**{prediction}** at {p:.0%}"
    return f"**{prediction}** (P {p:.0%}; most probable: {top} {probabilities[top]:.0%})"


METRICS_PLAIN = (
    "**Balanced accuracy**: of the cases of each diagnosis, the share the model names correctly, "
    "averaged over the diagnoses, so a rare diagnosis counts as much as a common one (guessing scores "
    "1 / number of classes). **Macro AUC**: for each diagnosis, how often a case of it gets a higher "
    "probability than a case without it (0.5 is chance, 1 a perfect ranking), averaged. **ECE**: the "
    "average gap between the confidence the model states and how often it is right (0 is perfect; a "
    "small test split cannot show less than its *floor*). **95% interval**: the range the number moves "
    "over when the test lesions or patients are resampled; two entries differ only when the interval "
    "of their *paired* difference leaves out 0."
)

# What-if metadata (relevance tab, skinui.ui.whatif)
WHATIF_INTRO = (
    "**What if?** Change one field of this case and see the probabilities move, beside the case as analysed. "
    "The image features are reused, so only the metadata encoder and the fusion head run again: a teaching view "
    "of how much this fusion method leans on each field."
)
WHATIF_BEFORE = "Analyse a case to ask what if one of its metadata fields were different."
WHATIF_NO_METADATA = "{entry} reads no metadata, so there is nothing to change here; pick an entry that takes metadata."
WHATIF_START = ("{field} is {value} in the case as analysed (prediction {cls}, {p}); change it to see what moves, "
                "or pick another field.")
WHATIF_NO_MOVE = ("{head}: no class probability moves by even 0.05 points, so {entry} makes next to no use of "
                  "{field} for this case; the prediction stays {cls} ({p}).")
WHATIF_ALPHA = "JI-ADF's weight on the metadata branch goes {a0:.2f} → {a1:.2f}."
WHATIF_OUT_OF_RANGE = ("{field} {value} is outside the valid range {lo}–{hi}{unit}; choose a value inside it "
                       "(the case as analysed is shown).")
WHATIF_NOT_A_NUMBER = "{field} {value} is not a number; choose a number (the case as analysed is shown)."
WHATIF_NOT_LISTED = "{field} {value} is not one of its values ({known}); choose one of them (the case as analysed is shown)."
WHATIF_UNKNOWN_FIELD = "{entry} reads no field called {field}; choose one of: {known}."
WHATIF_LEAK_MARK = " (leaks the label)"
WHATIF_BACK = "Back to the case"
WHATIF_SAME = "{field} is {value}, as in the case: the what-if is the case as analysed (prediction {cls}, {p})."
WHATIF_ADJUSTED = " (prevalence-adjusted decision; most probable: {top})"
