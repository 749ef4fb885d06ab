import json
from pathlib import Path

import pytest
import yaml

import lm_eval
from quant.eval.report import DEFAULT_PUBLISHED_PATH
from quant.eval.suites import SUITES_DIR, TASKS_DIR, UnknownSuite, available_suites, load_suite, read_suite_file

REPEATED = {"AIME 2024", "MATH 500", "GPQA", "MBPP", "MBPP+", "LiveCodeBench"}


def lm_eval_task_names() -> set[str]:
    """Task and group names declared in lm-eval's bundled YAML files and in ours (no indexing run)."""
    names = set()
    for root in (Path(lm_eval.__file__).parent / "tasks", TASKS_DIR):
        for path in root.rglob("*.yaml"):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith(("task:", "group:")):
                    names.add(line.split(":", 1)[1].strip().strip("'\""))
    return names


def test_the_deepseek_paper_suite_lists_the_nine_benchmarks_with_repeats():
    suite = load_suite("deepseek-paper")

    assert len(suite.tasks) == 9
    for task in suite.tasks:
        assert (task.repeats > 1) == (task.benchmark in REPEATED), task.benchmark


@pytest.mark.skipif(not DEFAULT_PUBLISHED_PATH.exists(), reason="shared/reference/ is not beside the checkout")
def test_its_benchmark_names_are_the_published_columns():
    published = json.loads(DEFAULT_PUBLISHED_PATH.read_text())["benchmarks"]
    assert load_suite("deepseek-paper").benchmarks == published


def test_every_mapped_task_exists_in_the_installed_lm_eval():
    known = lm_eval_task_names()
    for name in available_suites():
        for task in load_suite(name).tasks:
            assert task.lm_eval_task is None or task.lm_eval_task in known, task.lm_eval_task


def test_a_suite_file_can_be_read_by_path_and_bad_repeats_are_refused(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "tasks": [{"benchmark": "X", "lm_eval_task": "x", "repeats": 0}]}))
    with pytest.raises(ValueError, match="repeats"):
        read_suite_file(path)
    with pytest.raises(UnknownSuite, match="deepseek-paper"):
        load_suite("no-such-suite")


@pytest.mark.parametrize("name", ["/etc/passwd", "/etc/hostname", "../suites/smoke", "smoke.yaml",
                                  str(SUITES_DIR / "smoke.yaml"), "SMOKE", " smoke", ""])
def test_load_suite_takes_only_bundled_names_never_paths(name):
    with pytest.raises(UnknownSuite) as refused:
        load_suite(name)
    assert "known suites: deepseek-paper, smoke" in str(refused.value)
    assert "root:" not in str(refused.value)  # nothing of any file is read


def test_an_existing_and_a_missing_path_get_the_same_refusal():
    """No file-existence oracle: the message depends on the name only, not on the filesystem."""
    messages = []
    for name in ("/etc/passwd", "/no/such/file"):
        with pytest.raises(UnknownSuite) as refused:
            load_suite(name)
        messages.append(str(refused.value).replace(repr(name), "NAME"))
    assert messages[0] == messages[1]


def test_the_study_suite_evaluates_reasoning_models_with_their_settings():
    for task in load_suite("deepseek-paper").tasks:
        if task.lm_eval_task is None:
            continue
        assert task.chat and task.strip_thinking, task.benchmark
        assert task.sampling == {"temperature": 0.6, "top_p": 0.95} and task.max_tokens == 32768, task.benchmark
        assert task.generation_kwargs() == "temperature=0.6,top_p=0.95,do_sample=True,max_gen_toks=32768"
        assert task.recorded_settings()["sampling"] == {"temperature": 0.6, "top_p": 0.95}


def test_knowledge_benchmarks_run_in_generative_form_on_llama_server():
    """No prompt log-probabilities from llama-server: MMLU, CMMLU and C-Eval must generate their answer."""
    by_name = {t.benchmark: t for t in load_suite("deepseek-paper").tasks}
    assert by_name["MMLU"].lm_eval_task == "mmlu_generative"
    for benchmark, group in (("CMMLU", "dsq_cmmlu_gen"), ("C-Eval", "dsq_ceval_gen")):
        assert by_name[benchmark].lm_eval_task == group and "generative" in by_name[benchmark].note
        template = yaml.safe_load((TASKS_DIR / group / "_template_yaml").read_text())
        assert template["output_type"] == "generate_until" and template["metric_list"][0]["metric"] == "exact_match"
        subjects = yaml.safe_load((TASKS_DIR / group / f"_{group}.yaml").read_text())["task"]
        assert len(subjects) == {"dsq_cmmlu_gen": 67, "dsq_ceval_gen": 52}[group]
        assert all((TASKS_DIR / group / f"{s}.yaml").exists() for s in subjects)


def test_gen_kwargs_sampling_and_budget_merge():
    from quant.eval.suites import SuiteTask

    task = SuiteTask("X", "x", gen_kwargs="until=\\n,temperature=0", sampling={"temperature": 0.7}, max_tokens=64)
    assert task.generation_kwargs() == "until=\\n,temperature=0.7,do_sample=True,max_gen_toks=64"
    assert SuiteTask("X", "x").generation_kwargs() is None


def test_a_suites_server_slot_holds_its_longest_answer_and_a_prompt():
    assert load_suite("deepseek-paper").context_needed() == 32768 + 4096
    assert load_suite("smoke").context_needed() == 4096  # the task's own few tokens
