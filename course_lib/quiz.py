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
from dataclasses import dataclass, field
from typing import Sequence

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
}

Q = Question
QUESTIONS: dict[str, list[Question]] = {
    "01": [
        Q("A fully connected layer has n inputs and is followed by ReLU. With zero-mean "
          "Gaussian weights, which standard deviation keeps the activation variance roughly "
          "constant from layer to layer?",
          ("1", "sqrt(1/n) (Xavier/Glorot)", "sqrt(2/n) (He)", "0.01"),
          2,
          "Var(y) = n·Var(w)·E[x²]. ReLU zeroes half of its symmetric inputs, so E[x²] is half "
          "the variance of the previous pre-activation; Var(w) = 2/n gives that half back."),
        Q("Where does the factor 2 in He initialisation come from?",
          ("It averages fan-in and fan-out",
           "ReLU passes on only the positive half of a zero-mean input, halving the second "
           "moment, so the weights must double the variance",
           "The backward pass multiplies gradients by 2",
           "It was fitted empirically on ImageNet"),
          1,
          "For zero-mean symmetric z, E[relu(z)²] = Var(z)/2. Doubling Var(w) compensates. "
          "Averaging fan-in and fan-out is Glorot's compromise, not the ReLU factor."),
        Q("Five tanh layers of 100 units are initialised with std = 0.01. What do the "
          "per-layer activation histograms show?",
          ("Activations saturate at -1 and +1",
           "Every layer keeps unit variance",
           "Activations shrink towards 0 layer after layer (and so do the gradients)",
           "Activations become uniform on [-1, 1]"),
          2,
          "Each layer multiplies the variance by n·Var(w) = 100·1e-4 = 0.01, so the signal "
          "collapses towards 0. std = 1 does the opposite: tanh/sigmoid saturate."),
        Q("Xavier initialisation, Var(w) = 1/n, is derived for which kind of activation?",
          ("One that is roughly linear and symmetric around 0, such as tanh",
           "ReLU",
           "Any activation: it is exact for all of them",
           "Softmax outputs only"),
          0,
          "The derivation assumes f(z) ≈ z near 0, which holds for tanh (and roughly for the "
          "centred sigmoid). ReLU discards half the signal and needs the factor 2."),
    ],
    "02": [
        Q("In training mode, a BN layer normalises each feature with...",
          ("the running mean and variance",
           "the mean and variance of the current mini-batch",
           "mean 0 and variance 1, fixed",
           "the statistics of the whole training set, computed once"),
          1,
          "Training uses batch statistics (Algorithm 1) and updates the running averages as a "
          "side effect. Only eval mode uses the running statistics."),
        Q("After model.eval(), a BN layer normalises with...",
          ("the running mean and variance accumulated during training, without updating them",
           "the statistics of the test batch it is given",
           "the statistics of the last training batch",
           "gamma and beta only"),
          0,
          "In eval mode each example's output is deterministic and independent of the rest of "
          "the batch: the fixed running statistics are used and not updated."),
        Q("course_lib's BatchNorm uses momentum = 0.1 (PyTorch's convention). Which update "
          "does it perform after each training batch?",
          ("running = 0.1·running + 0.9·batch",
           "running = 0.9·running + 0.1·batch",
           "running = running + 0.1·batch",
           "running = batch, every 10th batch"),
          1,
          "momentum is the weight of the NEW batch: running = (1 - m)·running + m·batch, "
          "m = 0.1."),
        Q("Chainer, Keras and the 'Deep Learning from Scratch' book write momentum = 0.9 "
          "(or decay = 0.9) for the same layer. Compared with course_lib's momentum = 0.1...",
          ("it is the same update: 0.9 is the weight of the OLD running value",
           "it averages nine times faster",
           "it averages nine times slower",
           "it is the weight of the new batch, so the running statistics barely move"),
          0,
          "running = 0.9·running + 0.1·batch either way; one convention names the old value's "
          "weight (0.9), the other the new batch's (0.1 = 1 - 0.9)."),
        Q("Which variances does BN use during training?",
          ("Unbiased (divide by m - 1) for both",
           "Biased (divide by m) for both",
           "Biased (divide by m) to normalise the batch; the running variance is updated "
           "with the unbiased m/(m - 1)·σ²_B",
           "Unbiased to normalise; biased for the running variance"),
          2,
          "Algorithm 1 normalises with the biased batch variance; the inference statistics "
          "(Algorithm 2, PyTorch) use the unbiased estimate m/(m - 1)·σ²_B. The gap matters "
          "most at small m."),
    ],
    "03": [
        Q("You gradient-check your BN backward in training mode on a batch of ONE example, "
          "and it passes. What does that tell you?",
          ("Nothing: with m = 1, x - μ = 0, the output is β for every input, so dx is exactly "
           "0 both numerically and analytically",
           "The backward pass is correct, and m = 1 is the most precise check",
           "Only that dgamma is right",
           "The check would have produced NaN if anything was wrong"),
          0,
          "A single example is its own mean, so x̂ = 0 whatever x is. Any backward that returns "
          "zeros 'passes'. Check with m ≥ 2 (better ≥ 5) and random inputs."),
        Q("You check BN's dx with the loss L = out.sum(), i.e. an upstream gradient of ones. "
          "Why is that check vacuous?",
          ("Because float32 cannot represent 1 exactly",
           "Because Σ_i x̂_i = 0 per feature, so out.sum() = m·Σβ does not depend on x: the true "
           "dx is 0 and a wrong backward can return 0 too",
           "Because the loss must be a mean, not a sum",
           "It is not vacuous; ones is the standard choice"),
          1,
          "Use a random upstream gradient, e.g. L = (out * dout).sum() with dout ~ N(0, 1)."),
        Q("For out = γ·x̂ + β over a batch of m rows, which gradients are right?",
          ("dbeta = Σ_i dout_i, dgamma = Σ_i dout_i·x̂_i",
           "dbeta = Σ_i dout_i, dgamma = Σ_i dout_i·x_i",
           "dbeta = mean_i dout_i, dgamma = mean_i dout_i·x̂_i",
           "dbeta = dout, dgamma = dout·γ"),
          0,
          "γ and β are shared by all rows, so their gradients sum over the batch, and γ "
          "multiplies the normalised x̂, not the raw x."),
        Q("Why is the numerical gradient check done in float64 (target relative error < 1e-7)?",
          ("float64 is faster on a CPU",
           "float32 rounding (~1e-7 relative) divided by a step h ≈ 1e-5 leaves ~1e-2 noise in "
           "the central difference, which hides real bugs",
           "numpy cannot differentiate float32 arrays",
           "The analytical gradient is only defined in float64"),
          1,
          "The finite difference subtracts two nearly equal numbers; in float32 the rounding "
          "error swamps it. In float64 a correct backward reaches ~1e-9."),
        Q("A Linear layer with bias b feeds a BN layer. The gradient check says db ≈ 0 "
          "everywhere. Bug?",
          ("Yes: the bias gradient must never be zero",
           "Yes: the learning rate is too small",
           "No: BN subtracts the batch mean, which cancels any constant shift b, so b has no "
           "effect (β takes over its role)",
           "No: biases only get gradients in eval mode"),
          2,
          "That is why Linear layers before BN are usually built without a bias."),
    ],
    "04": [
        Q("A 15-layer ReLU MLP with Xavier-type init does not learn (it stays at or near chance); "
          "the same net with BN after each Linear learns. Main reason?",
          ("Without BN the signal scale changes by a factor at every layer, so activations and "
           "gradients vanish (or explode) over 15 layers; BN re-standardises every layer",
           "BN adds more parameters",
           "BN acts as dropout",
           "BN lowers the learning rate automatically"),
          0,
          "Xavier's 1/n is a factor 2 too small for ReLU, and the 14 ReLU layers of a 15-layer net "
          "compound it: the variance shrinks by 2^-14 (the std by 2^-7). "
          "BN resets the scale at each layer, whatever the init."),
        Q("You evaluate a trained BN network on the test set, in batches of 100, but forget "
          "to call model.eval(). What happens?",
          ("Nothing: the running statistics are used anyway",
           "BN normalises with each test batch's own statistics: a prediction depends on which "
           "examples share its batch, and the running statistics are overwritten with test data",
           "An exception is raised",
           "Only the speed changes"),
          1,
          "Training mode means batch statistics. With a batch of ONE example it is worse: "
          "x - μ = 0, so BN would output β whatever the input; course_lib (like PyTorch) "
          "refuses that case with an error in training mode."),
        Q("Why does a BN network tolerate a larger learning rate?",
          ("BN clips the gradients",
           "BN divides the learning rate by the batch size",
           "The output of Linear+BN does not change when W is scaled, so a large step cannot "
           "blow up the activations, and the gradient shrinks as ‖W‖ grows",
           "It does not; BN needs a smaller learning rate"),
          2,
          "Scale invariance: BN(a·Wx) = BN(Wx) for a > 0, and ∂L/∂W scales as 1/a. Large "
          "updates grow ‖W‖, which automatically damps later updates."),
        Q("In the init-scale sweep (16 weight scales, with and without BN), what is the "
          "typical finding?",
          ("Both train equally well at every scale",
           "BN only helps at the best init scale",
           "Without BN the net is less sensitive to the init scale",
           "With BN, the final accuracy is good over a much wider range of init scales"),
          3,
          "Without BN only a narrow band of scales avoids vanishing or exploding signals; BN "
          "makes the forward pass insensitive to the scale of W."),
    ],
    "05": [
        Q("Why does BN get worse with very small mini-batches (say 2 to 4)?",
          ("The GPU is under-used",
           "The batch mean and variance are noisy estimates, and training (batch statistics) "
           "and inference (running statistics) see different normalisations",
           "γ and β cannot be learned with small batches",
           "The biased variance becomes unbiased"),
          1,
          "The spread of batch statistics grows like 1/sqrt(m), and with m = 2 the biased "
          "variance is half the true one on average."),
        Q("In Batch Renormalization, r = σ_B/σ and d = (μ_B - μ)/σ (clipped to r_max, d_max). "
          "How are r and d treated?",
          ("As learned parameters like γ and β",
           "As constants in the backward pass (no gradient flows through them); with r = 1 "
           "and d = 0 it is plain BN",
           "They are only used at inference",
           "They replace the running statistics"),
          1,
          "r and d correct the batch statistics towards the running ones while training; "
          "r_max and d_max start at 1 and 0 and are relaxed on a schedule."),
        Q("Which normalisation behaves the same for any batch size, in train and eval mode?",
          ("Batch Normalization", "Batch Renormalization",
           "Layer Normalization (statistics over the features of each example)",
           "None of them"),
          2,
          "LayerNorm and GroupNorm compute statistics within one example, so there is no "
          "batch dependence and no running average."),
        Q("Why can BN be folded into the preceding Linear layer at inference, but not during "
          "training?",
          ("At inference BN uses fixed running statistics, so it is a per-feature affine map "
           "that can be merged into W and b; in training its statistics depend on the batch",
           "Folding needs float64",
           "It can be folded in training too",
           "Only the bias can be folded"),
          0,
          "Scale each output feature's weights by s = γ/sqrt(var + eps) and set "
          "b' = s·(b - mean) + β, with the running mean and variance."),
        Q("Santurkar et al. inject random noise after BN, shifting each layer's distribution "
          "on purpose. The network still trains about as well as with plain BN. What does this "
          "suggest?",
          ("BN works by reducing internal covariate shift",
           "Reducing internal covariate shift is not what makes BN help; Santurkar et al. "
           "propose a smoother loss landscape instead",
           "Noise is what makes BN work",
           "The experiment is wrong"),
          1,
          "Distribution shift was added back and training barely suffered, so the "
          "covariate-shift story cannot be the whole reason."),
    ],
    "06": [
        Q("The L2 penalty (λ/2)·‖W‖² adds what to the gradient ∂L/∂W?",
          ("λ·W", "(λ/2)·W", "2λ·W", "λ·sign(W)"),
          0,
          "d/dW (λ/2)·‖W‖² = λ·W. λ·sign(W) is the L1 penalty's gradient."),
        Q("Which parameters does course_lib's optimizer decay?",
          ("All of them",
           "Weight matrices only: not biases, not BN's γ and β",
           "Biases only",
           "γ and β only"),
          1,
          "Biases and β only shift, and decaying γ shrinks BN's output scale towards 0, "
          "fighting the normalisation; they are few and add little capacity."),
        Q("When is DECOUPLED weight decay (shrink the weights directly, W ← W - lr·λ·W, next to the "
          "optimizer's step) the same as adding (λ/2)·‖W‖² to the loss?",
          ("With any optimizer",
           "With Adam only",
           "For plain SGD only; with momentum the L2 term also passes through the velocity, and with "
           "Adam it is rescaled per weight by 1/sqrt(v), so decoupled decay (AdamW) differs from L2",
           "Never"),
          2,
          "SGD: W ← W - lr·(g + λW) is exactly decay. Momentum accumulates λW in the velocity and Adam "
          "divides it by sqrt(v), so there the decoupled update differs. COUPLED decay (adding λW to the "
          "gradient, what course_lib's SGD, Momentum and Adam do with weight_decay=λ) is L2 in the loss "
          "for every optimizer, bit for bit (chapter 06, section 4)."),
        Q("A Linear layer is followed by BN. What does weight decay on its W do?",
          ("It regularises the function the layer computes, as without BN",
           "Nothing at all",
           "It makes training diverge",
           "BN's output ignores the scale of W, so decay does not change the function; it "
           "shrinks ‖W‖ and thereby raises the effective learning rate"),
          3,
          "With scale invariance the gradient scales as 1/‖W‖ and the effective step as "
          "lr/‖W‖², so decay acts as a learning-rate schedule."),
    ],
    "07": [
        Q("course_lib's Dropout(p=0.2) in training mode...",
          ("keeps each unit with probability 0.2 and scales by 1/0.2",
           "zeroes each unit with probability 0.2 and scales the kept ones by 1/(1 - 0.2) = 1.25",
           "zeroes each unit with probability 0.2 and scales by 0.8 at test time",
           "zeroes 20% of the weights"),
          1,
          "p is the DROP probability and the dropout is inverted: the scaling happens at "
          "training time, so eval mode is the identity."),
        Q("The classic dropout of the original paper and the 'Deep Learning from Scratch' book "
          "does no scaling in training. What does it do at test time?",
          ("Nothing",
           "Multiplies activations by 1/(1 - p)",
           "Multiplies activations by (1 - p), the keep probability",
           "Drops units with probability p"),
          2,
          "Both versions give the same expected activation; inverted dropout moves the factor "
          "to training time so the inference code needs no change. (They still train differently "
          "with the same initialisation and learning rate: chapter 07, section 4.)"),
        Q("What is dx for inverted dropout with mask M and drop probability p?",
          ("dx = dout·M / (1 - p), with the same mask as the forward pass", "dx = dout",
           "dx = dout·M·(1 - p)", "dx = dout / p, with a fresh random mask"),
          0,
          "Dropout is an elementwise multiplication by M/(1 - p), so the backward multiplies "
          "by the same factor; a fresh mask would be a different function."),
        Q("CS231n's assignments use p = probability of KEEPING a unit. What fraction of units "
          "does course_lib's Dropout(p=0.1) keep in training?",
          ("10%", "90%", "50%", "100%"),
          1,
          "course_lib: p = drop probability, so 90% are kept. Read the convention before "
          "porting hyperparameters between code bases."),
        Q("Dropout placed before a BN layer often hurts at test time. Why?",
          ("Dropout changes the variance BN sees in training; at test dropout is off, so the "
           "running variance no longer matches ('variance shift')",
           "BN removes the dropout mask",
           "Dropout must always come first",
           "BN cannot be backpropagated through zeros"),
          0,
          "Put dropout after the last BN layer, or use small p."),
    ],
    "08": [
        Q("On which data do you compare hyperparameter settings?",
          ("The test set, since it is what we report",
           "The training set",
           "A validation split held out from the training data; the test set is used once, "
           "at the very end",
           "Whichever gives the highest accuracy"),
          2,
          "Choosing on the test set makes the test score an optimistic, biased estimate: the "
          "test data would be part of the training loop."),
        Q("Why sample the learning rate as lr = 10^U(-6, -2) instead of U(1e-6, 1e-2)?",
          ("The uniform version puts about 99% of the trials above 1e-4; log-uniform spends "
           "the same effort on every order of magnitude",
           "It is faster to compute",
           "Learning rates must be powers of 10",
           "There is no difference"),
          0,
          "(1e-2 - 1e-4)/(1e-2 - 1e-6) ≈ 0.99. What matters is the order of magnitude, so "
          "the exponent is what should be uniform."),
        Q("With 9 trials and two hyperparameters of which only one really matters, why is "
          "random search better than a 3×3 grid?",
          ("Random search is cheaper per trial",
           "Grids cannot use a log scale",
           "It is not better",
           "The grid tries only 3 distinct values of the important hyperparameter; random "
           "search tries 9"),
          3,
          "Bergstra & Bengio (2012): random search projects to distinct values in every "
          "dimension."),
        Q("The best trials of a coarse search all have lr near 1e-2, the top of the range. "
          "Next step?",
          ("Narrow the range to [5e-3, 1e-2]",
           "Extend or shift the range above 1e-2 before narrowing: the optimum may lie outside",
           "Report the best trial's test accuracy",
           "Switch to grid search"),
          1,
          "Best values at an edge mean the range was wrong. Narrow only around an optimum "
          "that is inside the range."),
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


@functools.lru_cache(maxsize=None)
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
