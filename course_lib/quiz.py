"""Short auto-graded multiple-choice quizzes, one per chapter.

Each quiz targets the misconceptions that cost the most debugging time later:
train vs eval mode, the momentum convention, biased vs unbiased variance,
inverted dropout, vacuous gradient checks, what weight decay applies to, and
tuning on the test set.

In a notebook::

    from course_lib import quiz
    quiz.ask("02")                 # form: radio buttons + "Check answers"

Without widgets (a terminal, a static page, an exam printout)::

    quiz.print_quiz("02")
    quiz.grade("02", [1, 0, 2, 3, 1])   # choice indices, counting from 0

The core imports nothing beyond the standard library; ipywidgets is imported
inside :func:`ask` only.
"""
from __future__ import annotations

import functools
import operator
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Question", "Result", "CHAPTERS", "QUESTIONS", "grade", "ask", "print_quiz"]

LETTERS = "ABCDEFGH"


@dataclass(frozen=True)
class Question:
    """One multiple-choice question.

    ``answer`` is the index (from 0) of the correct entry of ``choices``;
    ``explanation`` is shown after grading, right or wrong.
    """

    prompt: str
    choices: tuple[str, ...]
    answer: int
    explanation: str

    def __post_init__(self):
        # Tuples keep the question bank immutable when a notebook pokes at it.
        object.__setattr__(self, "choices", tuple(self.choices))
        if len(self.choices) < 2:
            raise ValueError(f"question {self.prompt[:40]!r} needs at least 2 choices")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(f"question {self.prompt[:40]!r}: answer index {self.answer} is not "
                             f"one of 0..{len(self.choices) - 1}")


@dataclass
class Result:
    """The outcome of :func:`grade`: a score and one feedback line per question."""

    chapter: str
    score: int
    total: int
    feedback: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """All questions right."""
        return self.score == self.total

    def __str__(self) -> str:
        head = f"Chapter {self.chapter} quiz: {self.score}/{self.total} correct"
        return "\n".join([head, *self.feedback])


CHAPTERS = {
    "01": "Weight initialisation",
    "02": "The BN forward pass",
    "03": "The BN backward pass",
    "04": "BN in practice",
    "05": "Batch size and BN's limits",
    "06": "Weight decay",
    "07": "Dropout",
    "08": "Hyperparameter search",
    "09": "BN in convolutional networks",
}

Q = Question
QUESTIONS: dict[str, list[Question]] = {
    "01": [
        Q("A fully connected ReLU layer has n = 200 inputs. Which weight std does He initialisation "
          "give (Var(w) = 2/n)?",
          ("0.01, the classic small constant", "0.1", "sqrt(1/200) ≈ 0.071 (Xavier)",
           "2/200 = 0.01, the variance itself"),
          1,
          "Var(w) = 2/200 = 0.01, so std = sqrt(0.01) = 0.1. Xavier's 1/n would give 0.071, too small "
          "for ReLU by a factor sqrt(2)."),
        Q("Where does the factor 2 in He initialisation come from?",
          ("It averages the fan-in and the fan-out of the layer",
           "ReLU zeroes half of a symmetric input: E[relu(z)²] = Var(z)/2",
           "The backward pass multiplies every gradient by 2",
           "It was fitted on ImageNet experiments, then kept"),
          1,
          "For zero-mean symmetric z, E[relu(z)²] = Var(z)/2. Doubling Var(w) compensates. "
          "Averaging fan-in and fan-out is Glorot's compromise, not the ReLU factor."),
        Q("Five tanh layers of 100 units are initialised with std = 0.01. By what factor does the "
          "activation variance change from one layer to the next?",
          ("×100: it explodes and tanh saturates at ±1", "×1: Var(w)·n = 1 keeps it",
           "×0.01: it collapses towards 0", "×0.5: tanh halves it like ReLU"),
          2,
          "n·Var(w) = 100·(0.01)² = 0.01 and tanh is ≈ linear near 0, so each layer multiplies the "
          "variance by 0.01 (the std by 0.1). The gradients shrink in the same way."),
        Q("Xavier's Var(w) = 1/n keeps tanh's variance at first, yet chapter 01 measures the signal "
          "still shrinking over 20 tanh layers. What corrects it?",
          ("A gain of 5/3 on the std, for tanh's slope below 1 away from 0",
           "ReLU's factor 2, since tanh is also zero for half its inputs",
           "Nothing: Xavier is exact for tanh at any depth",
           "A smaller std, so the units stay in the linear part"),
          0,
          "tanh flattens away from 0, so E[tanh(z)²] < Var(z) and the variance shrinks a little at every "
          "layer; PyTorch's recommended gain for tanh is 5/3."),
    ],
    "02": [
        Q("In training mode, a BN layer normalises each feature with...",
          ("the running mean and variance",
           "the mean and variance of the current mini-batch",
           "mean 0 and variance 1, fixed once and for all",
           "the statistics of the whole training set, computed once"),
          1,
          "Training uses batch statistics (Algorithm 1) and updates the running averages as a "
          "side effect. Only eval mode uses the running statistics."),
        Q("After model.eval(), a BN layer normalises with...",
          ("the running statistics, which stay fixed",
           "the statistics of the test batch it is given",
           "the statistics of the very last training batch it saw",
           "nothing: in eval mode only γ and β are applied"),
          0,
          "In eval mode each example's output is deterministic and independent of the rest of "
          "the batch: the fixed running statistics are used and not updated."),
        Q("A running mean starts at 0; course_lib's momentum 0.1 is the weight of the new batch: "
          "running = 0.9·running + 0.1·batch. Two training batches both have mean 10. What is the "
          "running mean after them?",
          ("1.0", "1.9", "10.0", "9.0"),
          1,
          "running = 0.9·running + 0.1·batch: 0.9·0 + 0.1·10 = 1, then 0.9·1 + 0.1·10 = 1.9. Early running "
          "statistics lag far behind; that is why a model evaluated after few steps looks broken."),
        Q("Chainer, Keras and the 'Deep Learning from Scratch' book write momentum = 0.9 "
          "(or decay = 0.9) for the same layer. Compared with course_lib's momentum = 0.1...",
          ("it is the same update, named by the old value's weight",
           "it averages nine times faster than course_lib does",
           "it averages nine times slower than course_lib does",
           "it weights the new batch by 0.9, so the average follows it closely"),
          0,
          "running = 0.9·running + 0.1·batch either way; one convention names the old value's "
          "weight (0.9), the other the new batch's (0.1 = 1 - 0.9)."),
        Q("A batch has m = 4 values of one feature with biased variance 3.0. Which variance feeds "
          "the running average (PyTorch and course_lib)?",
          ("3.0, the biased one used to normalise", "4.0 = 3.0·4/3, the unbiased estimate",
           "2.25 = 3.0·3/4", "0.75 = 3.0/4, the variance of the mean"),
          1,
          "Training normalises with the biased batch variance (divide by m); the running variance "
          "is updated with the unbiased m/(m - 1)·σ²_B = 4/3·3.0 = 4.0. The gap matters most at small m."),
    ],
    "03": [
        Q("You gradient-check your BN backward in training mode on a batch of ONE example, "
          "and it passes. What does that tell you?",
          ("Nothing: with m = 1 the output is β whatever x is, so dx = 0 on both sides",
           "The backward pass is correct, and m = 1 is the most precise check of all",
           "Only that dgamma is right; dbeta and dx were never tested",
           "The check would have produced NaN if anything had been wrong"),
          0,
          "A single example is its own mean, so x̂ = 0 whatever x is. Any backward that returns "
          "zeros 'passes'. Check with m ≥ 2 (better ≥ 5) and random inputs."),
        Q("You check BN's dx with the loss L = out.sum(), i.e. an upstream gradient of ones. "
          "Why is that check vacuous?",
          ("Because float32 cannot represent the number 1 exactly",
           "Σ_i x̂_i = 0, so the loss ignores x and the true dx is 0",
           "Because the loss must be a mean over the batch, not a sum",
           "It is not vacuous: a gradient of ones is the standard choice"),
          1,
          "out.sum() = m·Σβ does not depend on x, so a wrong backward that returns 0 passes too. Use a "
          "random upstream gradient, e.g. L = (out * dout).sum() with dout ~ N(0, 1)."),
        Q("One feature, m = 4 rows, upstream gradient dout = (1, 2, 3, 4) and x̂ = (-1, -1, 1, 1). "
          "What are dbeta and dgamma?",
          ("dbeta = 10, dgamma = 4", "dbeta = 2.5, dgamma = 1", "dbeta = 10, dgamma = 0",
           "dbeta = 4, dgamma = 10"),
          0,
          "dbeta = Σ dout = 10; dgamma = Σ dout·x̂ = -1 - 2 + 3 + 4 = 4. Both sum over the batch because "
          "γ and β are shared by every row (a mean would give 2.5 and 1)."),
        Q("Why is the numerical gradient check done in float64 (target relative error < 1e-7)?",
          ("float64 is faster than float32 on a CPU",
           "float32 rounding over a step h leaves ~1e-2 noise",
           "numpy cannot differentiate float32 arrays at all",
           "The analytical gradient is only defined in float64"),
          1,
          "The finite difference subtracts two nearly equal numbers: float32 rounding (~1e-7 relative) "
          "divided by h ≈ 1e-5 leaves ~1e-2 noise, which hides real bugs. In float64 a correct backward "
          "reaches ~1e-9."),
        Q("A Linear layer with bias b feeds a BN layer. The gradient check says db ≈ 0 "
          "everywhere. Bug?",
          ("Yes: a bias gradient must never be exactly zero",
           "Yes: the learning rate is too small to move b",
           "No: BN subtracts the mean, so b has no effect",
           "No: biases only receive gradients in eval mode"),
          2,
          "BN subtracts the batch mean, which cancels any constant shift b (β takes over its role). "
          "That is why Linear layers before BN are usually built without a bias."),
    ],
    "04": [
        Q("A 15-layer ReLU MLP uses Xavier init, Var(w) = 1/n. Ignoring everything else, by what factor "
          "has the activation std shrunk after its 14 hidden ReLU layers?",
          ("2^-14 ≈ 6e-5", "2^-7 ≈ 0.008", "1/15 ≈ 0.07", "It does not shrink: Xavier keeps it"),
          1,
          "Each ReLU layer halves the second moment that Xavier's 1/n assumes it keeps, so the variance "
          "shrinks by 2^-14 and the std by 2^-7 = 1/128. BN resets the scale at every layer, whatever the init."),
        Q("You evaluate a trained BN network on the test set, in batches of 100, but forget "
          "to call model.eval(). What happens?",
          ("Nothing changes: the running statistics are used anyway",
           "Each test batch is normalised with its own statistics",
           "An exception is raised before the first test batch",
           "Only the speed changes; the predictions are identical"),
          1,
          "Training mode means batch statistics: a prediction depends on which examples share its batch, "
          "and the running statistics are overwritten with test data. With a batch of ONE example BN "
          "would output β whatever the input; course_lib (like PyTorch) refuses that case."),
        Q("Why does a BN network tolerate a larger learning rate?",
          ("BN clips every gradient to a fixed maximum norm",
           "BN divides the learning rate by the batch size",
           "Scaling W leaves BN's output unchanged",
           "It does not: a BN network needs a smaller learning rate"),
          2,
          "Scale invariance: BN(a·Wx) = BN(Wx) for a > 0, and ∂L/∂W scales as 1/a. Large updates grow "
          "‖W‖, which automatically damps later updates, and the activations cannot blow up."),
        Q("In the init-scale sweep (16 weight scales, with and without BN), what is the "
          "typical finding?",
          ("Both train equally well at every one of the scales",
           "BN helps only at the best init scale of the plain net",
           "Without BN the net is less sensitive to the scale",
           "With BN a much wider range of scales trains well"),
          3,
          "Without BN only a narrow band of scales avoids vanishing or exploding signals; BN "
          "makes the forward pass insensitive to the scale of W."),
    ],
    "05": [
        Q("The spread of a batch mean falls like 1/sqrt(m). How much noisier is BN's batch mean at "
          "m = 4 than at m = 64?",
          ("16 times", "4 times", "2 times", "Not at all: it is unbiased"),
          1,
          "sqrt(64/4) = 4. Unbiased is not the same as precise; at m = 2 the biased variance is also half "
          "the true one on average, and training and inference see different normalisations."),
        Q("In Batch Renormalization, r = σ_B/σ and d = (μ_B - μ)/σ (clipped to r_max, d_max). "
          "How are r and d treated?",
          ("As learned parameters, updated like γ and β",
           "As constants in the backward pass",
           "They are computed and used only at inference",
           "They replace the running statistics entirely"),
          1,
          "No gradient flows through r and d; with r = 1 and d = 0 the layer is plain BN. They correct the "
          "batch statistics towards the running ones while training; r_max and d_max start at 1 and 0."),
        Q("Which normalisation behaves the same for any batch size, in train and eval mode?",
          ("Batch Normalization", "Batch Renormalization",
           "Layer Normalization", "None of the three"),
          2,
          "LayerNorm (and GroupNorm) compute statistics over the features of one example, so there is no "
          "batch dependence and no running average."),
        Q("A ReLU unit's pre-activation is negative for every training image (a dead unit). Which "
          "change lets its weights receive a gradient again?",
          ("A smaller batch, so that the batch statistics are noisier",
           "A larger learning rate for a few steps",
           "LeakyReLU: a small slope for negative inputs",
           "Dropout before the unit, so it is sometimes off"),
          2,
          "ReLU's gradient is exactly 0 for negative inputs, so nothing moves a dead unit's weights. "
          "LeakyReLU passes slope·dout back; BN keeps units alive differently, by re-centring their input."),
        Q("Santurkar et al. inject random noise after BN, shifting each layer's distribution "
          "on purpose. The network still trains about as well as with plain BN. What does this "
          "suggest?",
          ("BN works by reducing internal covariate shift",
           "Removing covariate shift is not why BN helps",
           "Noise is what makes BN work so well",
           "The experiment must be wrong"),
          1,
          "Distribution shift was added back and training barely suffered, so the covariate-shift story "
          "cannot be the whole reason; Santurkar et al. propose a smoother loss landscape. Chapter 05's "
          "small probe is consistent with that, not a proof."),
    ],
    "06": [
        Q("With the L2 penalty (λ/2)·‖W‖², λ = 1e-4 and a weight of 2.0, what does the penalty add to "
          "that weight's gradient?",
          ("2e-4", "1e-4", "4e-4", "2e-4·sign(W)"),
          0,
          "d/dW (λ/2)·W² = λ·W = 1e-4·2.0 = 2e-4. λ·sign(W) is the L1 penalty's gradient."),
        Q("Which parameters does course_lib's optimizer decay?",
          ("All of them, γ and β included",
           "Weight matrices only",
           "Biases only, to keep the offsets small",
           "BN's γ and β only, not the weights"),
          1,
          "Biases and β only shift, and decaying γ shrinks BN's output scale towards 0, "
          "fighting the normalisation; they are few and add little capacity."),
        Q("When is DECOUPLED weight decay (W ← W - lr·λ·W next to the optimizer's step) the same "
          "as adding (λ/2)·‖W‖² to the loss?",
          ("With any optimizer at all", "With Adam only", "With plain SGD only", "Never"),
          2,
          "SGD: W ← W - lr·(g + λW) is exactly decay. Momentum accumulates λW in the velocity and Adam "
          "divides it by sqrt(v), so there the decoupled update (AdamW) differs. COUPLED decay (adding λW "
          "to the gradient, what course_lib's SGD, Momentum and Adam do with weight_decay=λ) is L2 in the "
          "loss for every optimizer, bit for bit (chapter 06, section 4)."),
        Q("A Linear layer is followed by BN. What does weight decay on its W do?",
          ("It regularises the function, as it would without BN",
           "Nothing at all: BN undoes it at every step",
           "It makes training diverge after a few epochs",
           "It shrinks ‖W‖, raising the effective step"),
          3,
          "BN's output ignores the scale of W, so decay does not change the function; the gradient scales "
          "as 1/‖W‖ and the effective step as lr/‖W‖², so decay acts as a learning-rate schedule."),
    ],
    "07": [
        Q("course_lib's Dropout(p=0.2) in training mode...",
          ("keeps each unit with probability 0.2 and scales by 5",
           "drops each unit with probability 0.2, scales the rest by 1.25",
           "drops each unit with probability 0.2; scales by 0.8 at test",
           "zeroes 20 % of the weights of the layer that follows"),
          1,
          "p is the DROP probability and the dropout is inverted: kept units are scaled by "
          "1/(1 - 0.2) = 1.25 at training time, so eval mode is the identity."),
        Q("The classic dropout of the original paper and the 'Deep Learning from Scratch' book "
          "does no scaling in training. What does it do at test time?",
          ("Nothing: test activations are used as they are",
           "Multiplies activations by 1/(1 - p)",
           "Multiplies activations by 1 - p",
           "Drops units with probability p, as in training"),
          2,
          "1 - p is the keep probability: both versions give the same expected activation; inverted "
          "dropout moves the factor to training time. (They still train differently with the same "
          "initialisation and learning rate: chapter 07, section 4.)"),
        Q("What is dx for inverted dropout with mask M and drop probability p?",
          ("dout·M / (1 - p)", "dout, unchanged", "dout·M·(1 - p)", "dout / p, with a fresh mask"),
          0,
          "Dropout is an elementwise multiplication by M/(1 - p), so the backward multiplies "
          "by the same factor and the same mask; a fresh mask would be a different function."),
        Q("CS231n's assignments use p = probability of KEEPING a unit. What fraction of units "
          "does course_lib's Dropout(p=0.1) keep in training?",
          ("10 %", "90 %", "50 %", "100 %"),
          1,
          "course_lib: p = drop probability, so 90 % are kept. Read the convention before "
          "porting hyperparameters between code bases."),
        Q("Dropout placed before a BN layer often hurts at test time. Why?",
          ("The running variance no longer matches",
           "BN removes the dropout mask during the backward pass",
           "Dropout must always be the first layer of a network",
           "BN cannot be backpropagated through zeroed units"),
          0,
          "Dropout changes the variance BN sees in training; at test dropout is off, so the input variance "
          "differs from the running variance ('variance shift'). Put dropout after the last BN layer, or "
          "use small p."),
    ],
    "08": [
        Q("On which data do you compare hyperparameter settings?",
          ("The test set, since it is what we report",
           "The training set, which the model has fitted",
           "A validation split held out from training",
           "Whichever split gives the highest accuracy"),
          2,
          "Choosing on the test set makes the test score an optimistic, biased estimate: the test data "
          "would be part of the training loop. Use it once, at the very end."),
        Q("lr is sampled uniformly from [1e-6, 1e-2] instead of as 10^U(-6, -2). About what share of "
          "the trials land above 1e-4?",
          ("About 50 %", "About 99 %", "About 67 %", "About 1 %"),
          1,
          "(1e-2 - 1e-4)/(1e-2 - 1e-6) ≈ 0.99. Log-uniform sampling puts 50 % there and spends the same "
          "effort on every order of magnitude, which is what matters for a learning rate."),
        Q("With 9 trials and two hyperparameters of which only one really matters, why is "
          "random search better than a 3×3 grid?",
          ("Random search is cheaper per trial",
           "Grids cannot be laid out on a log scale",
           "It is not better: both try 9 settings",
           "It tries 9 values of the one that matters"),
          3,
          "The grid tries only 3 distinct values of the important hyperparameter; random search projects to "
          "distinct values in every dimension (Bergstra & Bengio, 2012)."),
        Q("The best trials of a coarse search all have lr near 1e-2, the top of the range. "
          "Next step?",
          ("Narrow the range to [5e-3, 1e-2] and search again",
           "Extend the range above 1e-2 first",
           "Report the best trial's test accuracy and stop",
           "Switch to grid search around the best trial"),
          1,
          "Best values at an edge mean the range was wrong: the optimum may lie outside. Narrow only around "
          "an optimum that is inside the range (search.narrow widens past an edge)."),
        Q("Successive halving with eta = 3 trains 27 trials for 2 epochs, the best 9 for 6 epochs, then "
          "the best 3 for 18 epochs. How many epochs does it train in all?",
          ("162", "486", "54", "243"),
          0,
          "27 × 2 + 9 × 6 + 3 × 18 = 54 + 54 + 54 = 162: every round costs the same. Training all 27 for "
          "18 epochs would cost 486. The catch: if 2 epochs leave every trial at chance, round 1 keeps "
          "random trials — choose the minimum budget so that round 1 already means something."),
    ],
    "09": [
        Q("A BatchNorm2d layer follows a convolution with 16 output channels; a batch holds 32 feature "
          "maps of 14 x 14. How many values does each batch mean average, and how many means are there?",
          ("6,272 values, 16 means", "32 values, 3,136 means", "196 values, 512 means",
           "512 values, 196 means"),
          0,
          "One statistic per channel over N, H and W: 32 x 14 x 14 = 6,272 values, 16 means. "
          "Per-position statistics (32 values, 16 x 196 = 3,136 means) are what a BatchNorm1d on the "
          "flattened maps would compute."),
        Q("Why does BatchNorm2d keep one mean and variance per channel rather than one per (channel, "
          "position)?",
          ("Border positions see too few values to average",
           "Per-position statistics would not fit in memory",
           "One filter makes every position: they are one feature",
           "Only per-channel statistics have a closed-form backward"),
          2,
          "A convolution applies the same filter at every position, so every pixel of a channel is an "
          "example of the same feature; normalizing it the same way everywhere keeps the layer "
          "translation-equivariant and gives each statistic m*H*W values instead of m."),
        Q("BN (eval mode, running mean mu, running variance v, gamma, beta, eps) is folded into the "
          "convolution before it, whose weights are W and which has no bias. What is the folded bias?",
          ("beta", "beta - gamma * mu / sqrt(v + eps)", "beta - mu",
           "gamma * beta / sqrt(v + eps)"),
          1,
          "With s = gamma / sqrt(v + eps), BN computes s * (conv(x) - mu) + beta = conv_{W s}(x) + "
          "(beta - s * mu): scale each output channel's filter by s and use beta - s * mu as its bias."),
        Q("In this chapter's CNN, how did BN do at batch size 2, compared with the MLP of chapter 05?",
          ("It collapsed as in the MLP, far behind no norm",
           "It diverged on every seed at lr 0.01",
           "It beat GroupNorm by ten points on every seed",
           "It matched GroupNorm within the seed spread"),
          3,
          "Each per-channel statistic averages 2 x 28 x 28 values in the first layer, not 2, so the "
          "normalized values are not just +-1 as in the MLP; over seeds BN and GroupNorm at batch 2 were "
          "within each other's spread."),
        Q("At batch size 2, BN's per-channel mean in the first conv layer averages m*H*W = 1,568 values, "
          "yet it is only as precise as a mean of a few hundred independent values. Why?",
          ("Pixels of one image are correlated, not independent",
           "Max-pooling discards three of every four values",
           "The zero padding values are left out of the mean",
           "The running average down-weights older batches"),
          0,
          "Neighbouring pixels of the same image move together (the background is zero in all of them), "
          "so the 784 pixels of an image carry far less than 784 independent pieces of information. "
          "Still, a few hundred is far more than the 2 of a fully connected BN layer at batch 2."),
    ],
}
del Q


def _chapter_key(chapter) -> str:
    """``"2"``, ``2`` and ``"02"`` all mean chapter ``"02"``."""
    key = str(chapter).strip()
    if key.isdigit():
        key = f"{int(key):02d}"
    if key not in QUESTIONS:
        raise ValueError(f"no quiz for chapter {chapter!r}; choose one of "
                         f"{', '.join(QUESTIONS)}")
    return key


def _choice_index(value, question_number: int, n_choices: int) -> int | None:
    """Validate one answer: ``None`` (unanswered) or an index 0..n_choices-1."""
    if value is None:
        return None
    if isinstance(value, bool):  # True would silently mean choice 1
        raise ValueError(f"answer {question_number} is {value!r}; give a choice index")
    if isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in LETTERS:
        value = LETTERS.index(value.strip().upper())  # "B" is as clear as 1
    try:
        index = operator.index(value)
    except TypeError:
        raise ValueError(f"answer {question_number} is {value!r}; give the choice index "
                         f"(0..{n_choices - 1}) or letter") from None
    if not 0 <= index < n_choices:
        raise ValueError(f"answer {question_number} is {index}, but question {question_number} "
                         f"has choices 0..{n_choices - 1} "
                         f"({LETTERS[0]}..{LETTERS[n_choices - 1]})")
    return index


def grade(chapter, answers: Sequence) -> Result:
    """Grade ``answers`` (one choice index per question, from 0) for ``chapter``.

    A letter (``"B"``) is accepted for an index, and ``None`` marks an
    unanswered question, which counts as wrong.  Raises ``ValueError`` for an
    unknown chapter, the wrong number of answers, or a choice that does not
    exist.
    """
    key = _chapter_key(chapter)
    questions = QUESTIONS[key]
    if isinstance(answers, (str, bytes)) or not hasattr(answers, "__len__"):
        raise ValueError(f"answers must be a list with one choice index per question, "
                         f"got {answers!r}")
    if len(answers) != len(questions):
        raise ValueError(f"chapter {key} has {len(questions)} questions but {len(answers)} "
                         f"answers were given; give one choice index per question")
    chosen = [_choice_index(a, n, len(q.choices))
              for n, (a, q) in enumerate(zip(answers, questions), start=1)]
    score = 0
    feedback = []
    for n, (index, q) in enumerate(zip(chosen, questions), start=1):
        right = LETTERS[q.answer]
        if index == q.answer:
            score += 1
            feedback.append(f"Q{n}: correct ({right}). {q.explanation}")
        elif index is None:
            feedback.append(f"Q{n}: not answered; the answer is {right}. {q.explanation}")
        else:
            feedback.append(f"Q{n}: not quite: you chose {LETTERS[index]}, the answer is "
                            f"{right}. {q.explanation}")
    return Result(key, score, len(questions), feedback)


def quiz_text(chapter) -> str:
    """The quiz of ``chapter`` as plain text (questions and lettered choices, no answers)."""
    key = _chapter_key(chapter)
    lines = [f"Chapter {key} quiz: {CHAPTERS[key]}", ""]
    for n, q in enumerate(QUESTIONS[key], start=1):
        lines.extend(textwrap.wrap(f"Q{n}. {q.prompt}", width=88, subsequent_indent="    "))
        for letter, choice in zip(LETTERS, q.choices):
            lines.extend(textwrap.wrap(f"{letter}) {choice}", width=88, initial_indent="    ",
                                       subsequent_indent="       "))
        lines.append("")
    example = ", ".join("0" for _ in QUESTIONS[key])
    lines.append(f"Grade with: quiz.grade({key!r}, [{example}])  "
                 "(choice indices from 0, or letters)")
    return "\n".join(lines)


def print_quiz(chapter) -> None:
    """Print the quiz of ``chapter`` as plain text, for use without widgets."""
    print(quiz_text(chapter))


def ask(chapter):
    """An ipywidgets form for ``chapter``: one RadioButtons per question, a button, feedback.

    Returns the form (a ``VBox``; display it or leave it as a cell's last
    expression).  For tests and scripting it carries ``form.radios`` (one
    RadioButtons per question, ``value`` = choice index or ``None``),
    ``form.button``, ``form.output`` and ``form.result`` (the last
    :class:`Result`, ``None`` before the first check).
    """
    import ipywidgets as widgets  # only here: the core must not need ipywidgets

    key = _chapter_key(chapter)
    questions = QUESTIONS[key]
    items = [widgets.HTML(f"<h4>Chapter {key} quiz: {_escape(CHAPTERS[key])}</h4>")]
    radios = []
    for n, q in enumerate(questions, start=1):
        radio = widgets.RadioButtons(
            options=[(f"{LETTERS[i]}) {c}", i) for i, c in enumerate(q.choices)],
            value=None,
            layout=widgets.Layout(width="auto"),
        )
        radios.append(radio)
        items += [widgets.HTML(f"<b>Q{n}.</b> {_escape(q.prompt)}"), radio]
    button = widgets.Button(description="Check answers", button_style="primary",
                            icon="check")
    output = widgets.Output()
    form = _QuizForm(items + [button, output])
    form.static_text = quiz_text(key)
    form.radios, form.button, form.output, form.result = radios, button, output, None

    def check(_button):
        result = grade(key, [r.value for r in radios])
        form.result = result
        # Replace rather than append: clear_output() needs a running kernel.
        output.outputs = ()
        output.append_stdout(str(result) + "\n")

    button.on_click(check)
    return form


@functools.cache
def _quiz_form_class():
    import ipywidgets as widgets

    class QuizForm(widgets.VBox):
        """A VBox whose display also carries the quiz as HTML text, so a saved notebook read
        without a kernel (or exported to HTML) still shows the questions."""

        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs)
            bundle["text/html"] = f"<pre>{_escape(self.static_text)}</pre>"
            return bundle

    return QuizForm


def _QuizForm(children):
    return _quiz_form_class()(children)


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=False)
