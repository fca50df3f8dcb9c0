"""Tests of the chapter quizzes (course_lib.quiz)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from course_lib import quiz

CHAPTERS = ["01", "02", "03", "04", "05", "06", "07", "08", "09"]


def correct(chapter):
    return [q.answer for q in quiz.QUESTIONS[chapter]]


def wrong(chapter):
    return [(q.answer + 1) % len(q.choices) for q in quiz.QUESTIONS[chapter]]


def test_every_chapter_has_a_quiz_of_3_to_5_questions():
    assert sorted(quiz.QUESTIONS) == CHAPTERS
    assert sorted(quiz.CHAPTERS) == CHAPTERS
    for chapter, questions in quiz.QUESTIONS.items():
        assert 3 <= len(questions) <= 5, chapter


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_questions_are_well_formed(chapter):
    for q in quiz.QUESTIONS[chapter]:
        assert isinstance(q, quiz.Question)
        assert q.prompt.strip() and q.explanation.strip()
        assert len(q.choices) >= 2
        assert len(set(q.choices)) == len(q.choices), f"duplicate choices in {q.prompt!r}"
        assert 0 <= q.answer < len(q.choices)
    # The answer must not always sit at the same position, or the quiz grades pattern-spotting.
    assert len({q.answer for q in quiz.QUESTIONS[chapter]}) > 1


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_correct_answers_score_full_marks_and_wrong_ones_do_not(chapter):
    result = quiz.grade(chapter, correct(chapter))
    assert (result.score, result.total) == (len(quiz.QUESTIONS[chapter]),) * 2
    assert result.passed
    assert len(result.feedback) == result.total
    assert all("correct" in line for line in result.feedback)

    result = quiz.grade(chapter, wrong(chapter))
    assert result.score == 0 and not result.passed
    assert all("the answer is" in line for line in result.feedback)


def test_partial_score_letters_and_unanswered():
    answers = correct("02")
    answers[0] = (answers[0] + 1) % len(quiz.QUESTIONS["02"][0].choices)
    answers[1] = None
    answers[2] = "ABCD"[answers[2]].lower()
    result = quiz.grade(2, answers)  # 2, "2" and "02" all mean chapter 02
    assert result.score == len(answers) - 2
    assert "not quite" in result.feedback[0] and "not answered" in result.feedback[1]
    assert f"{result.score}/{result.total}" in str(result)


def test_momentum_question_states_the_new_batch_convention():
    # The convention is the most-missed point of chapter 02: keep it in the quiz.
    text = quiz.quiz_text("02")
    assert "running = 0.9·running + 0.1·batch" in text


@pytest.mark.parametrize("chapter, answers, message", [
    ("10", [0], "no quiz for chapter '10'"),
    ("bn", [0], "choose one of 01"),
    ("01", [0], "has 4 questions but 1 answers"),
    ("01", "0120", "must be a list"),
    ("01", [0, 0, 0, 4], "answer 4 is 4, but question 4 has choices 0..3"),
    ("01", [0, -1, 0, 0], "answer 2 is -1"),
    ("01", [0, 0, True, 0], "answer 3 is True"),
    ("01", [0, 0, 1.5, 0], "answer 3 is 1.5"),
])
def test_grade_errors_say_what_is_wrong(chapter, answers, message):
    with pytest.raises(ValueError, match=message):
        quiz.grade(chapter, answers)


def test_invalid_question_is_rejected():
    with pytest.raises(ValueError, match="at least 2 choices"):
        quiz.Question("p", ("only",), 0, "e")
    with pytest.raises(ValueError, match="answer index 2"):
        quiz.Question("p", ("a", "b"), 2, "e")


def test_print_quiz_lists_questions_without_answers(capsys):
    quiz.print_quiz("07")
    out = capsys.readouterr().out
    assert "Chapter 07 quiz: Dropout" in out
    assert "Q1." in out and "A) " in out and "quiz.grade('07'" in out
    for q in quiz.QUESTIONS["07"]:
        assert q.explanation[:30] not in out  # the explanations are the answers


def test_core_does_not_import_ipywidgets():
    code = "import sys, course_lib.quiz as q; q.grade('01', [0, 0, 0, 0]); " \
           "q.quiz_text('01'); assert 'ipywidgets' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ask_builds_a_form_and_the_button_grades():
    widgets = pytest.importorskip("ipywidgets")
    form = quiz.ask("03")
    assert isinstance(form, widgets.VBox)
    questions = quiz.QUESTIONS["03"]
    assert len(form.radios) == len(questions)
    assert all(isinstance(r, widgets.RadioButtons) and r.value is None for r in form.radios)
    assert form.button in form.children and form.output in form.children
    assert form.button.description == "Check answers"
    assert form.result is None

    for radio, q in zip(form.radios, questions):
        radio.value = q.answer
    form.button.click()
    assert form.result.score == len(questions)
    text = "".join(o.get("text", "") for o in form.output.outputs)
    assert f"{len(questions)}/{len(questions)} correct" in text

    form.radios[0].value = (questions[0].answer + 1) % len(questions[0].choices)
    form.radios[1].value = None
    form.button.click()
    assert form.result.score == len(questions) - 2
    text = "".join(o.get("text", "") for o in form.output.outputs)
    assert f"{len(questions) - 2}/{len(questions)} correct" in text  # replaced, not appended
    assert "not answered" in text


def test_the_keyed_answer_is_rarely_the_longest_option():
    # A quiz whose right answer is the longest option grades test-taking, not understanding.
    questions = [q for qs in quiz.QUESTIONS.values() for q in qs]
    longest = sum(len(q.choices[q.answer]) == max(len(c) for c in q.choices) for q in questions)
    assert longest <= len(questions) / 3, f"{longest} of {len(questions)} keyed answers are the longest option"


@pytest.mark.parametrize("topic", ["LeakyReLU", "Successive halving", "dead unit"])
def test_the_quizzes_cover_dying_relu_and_successive_halving(topic):
    text = "\n".join(quiz.quiz_text(chapter) for chapter in quiz.QUESTIONS).lower()
    assert topic.lower() in text
