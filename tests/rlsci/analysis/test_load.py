"""load_run / compare_runs / saturation / subdomain_table / answer_table on hand-made run directories (exact values)."""

from __future__ import annotations

import json

import pytest

from rlsci.analysis import answer_table, compare_runs, load_run, saturation, subdomain_table


def test_a_resumed_run_keeps_the_last_line_of_each_step(write_run):
    # steps 2 and 3 were logged, the run stopped, resumed from step 1's checkpoint and logged them again
    lines = [{"step": s, "train/acc": a} for s, a in [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3), (2, 0.25), (3, 0.35),
                                                       (4, 0.4)]]
    run = load_run(write_run(metrics=lines).root)
    assert run.metrics.index.tolist() == [0, 1, 2, 3, 4]
    assert run.metrics["train/acc"].tolist() == [0.0, 0.1, 0.25, 0.35, 0.4]


def test_a_run_being_written_reads_as_far_as_it_got(write_run):
    # no config.yaml yet, a half-written last line, a rollout file being written (temporary name)
    rd = write_run(metrics=[{"step": 0, "eval/val/acc": 0.1}, {"step": 1, "train/acc": 0.5}],
                   lines=['{"step": 2, "train/ac'], rollouts={1: [{"pred": "A", "gold": "B"}]})
    (rd.rollouts / ".step_000002.parquet.123.ab.tmp").write_bytes(b"PAR1 half")
    run = load_run(rd.root)
    assert run.config == {} and run.name == "run"
    assert run.metrics.index.tolist() == [0, 1]
    assert run.series("train/acc").to_dict() == {1: 0.5}
    assert run.rollouts[["step", "pred", "gold"]].values.tolist() == [[1, "A", "B"]]
    assert run.evals.empty and run.eval_summary.empty and run.best is None
    assert run.series("missing/key").empty


def test_an_unreadable_line_before_the_last_is_an_error(write_run):
    rd = write_run(lines=['{"step": 0}\n', "garbage\n", '{"step": 1}\n'])
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not JSON"):
        load_run(rd.root)


def test_other_formats_and_non_runs_are_refused(write_run, tmp_path):
    rd = write_run(metrics=[{"step": 0}])
    rd.meta.write_text(json.dumps({"format": 99, "name": "x"}))
    with pytest.raises(ValueError, match=r"run.json: run-directory format 99; this rlsci reads format 1"):
        load_run(rd.root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no run"):
        load_run(tmp_path / "empty")


def test_eval_summary_and_items(write_run):
    rd = write_run(eval_summary=[{"format": 1, "step": 0, "suite": "train", "eval/val/acc": 0.1},
                                 {"format": 1, "step": 2, "suite": "train", "eval/val/acc": 0.2},
                                 {"format": 1, "step": 2, "suite": "train", "eval/val/acc": 0.3}],
                   evals={0: [{"benchmark": "val", "id": "q1", "correct": False}],
                          2: [{"benchmark": "val", "id": "q1", "correct": True}]},
                   config={"run": {"name": "from-config"}})
    run = load_run(rd.root)
    assert run.eval_summary["eval/val/acc"].to_dict() == {0: 0.1, 2: 0.3}
    assert run.evals[["step", "correct"]].values.tolist() == [[0, False], [2, True]]
    assert run.name == "run"  # run.json's name comes first


def test_columns_are_the_direct_children_of_a_prefix(write_run):
    run = load_run(write_run(metrics=[{"step": 1, "train/acc": 0.5, "train/acc/domain/physics": 0.25,
                                       "train/acc/domain/biology": 0.75, "train/acc/domain/x/deeper": 1.0,
                                       "train/acc/domain/never": None}]).root)
    assert {k: s.tolist() for k, s in run.columns("train/acc/domain").items()} == {"biology": [0.75],
                                                                                  "physics": [0.25]}


def test_compare_runs_tells_runs_of_one_name_apart(write_run, tmp_path):
    a = write_run("a", metrics=[{"step": 0, "train/acc": 0.1}, {"step": 1, "train/acc": 0.4}])
    b = write_run("b", metrics=[{"step": 0, "train/acc": 0.2}, {"step": 1, "train/acc": 0.3}])
    b.meta.write_text(json.dumps({"format": 1, "name": "a"}))
    comparison = compare_runs([a.root, b.root])
    assert [r.name for r in comparison.runs] == ["a (a)", "a (b)"]
    assert comparison.metrics[["run", "step", "train/acc"]].values.tolist() == [
        ["a (a)", 0, 0.1], ["a (a)", 1, 0.4], ["a (b)", 0, 0.2], ["a (b)", 1, 0.3]]
    table = comparison.table(["train/acc"])
    assert table.loc["a (a)", "train/acc last"] == 0.4 and table.loc["a (b)", "train/acc best"] == 0.3
    assert table.loc["a (b)", "train/acc best step"] == 1  # 0.3 at step 1


def test_saturation_and_the_ood_gain_after_it(write_run):
    # val 0.1, 0.5, 0.795, 0.8: best 0.8, within tol 0.01 from 0.79 on -> step 4 (0.795)
    # ood at step 4: 0.40, at the last step 6: 0.45 -> gain +0.05
    val, ood = [0.1, 0.5, 0.795, 0.8], [0.2, 0.3, 0.4, 0.45]
    run = load_run(write_run(metrics=[{"step": 2 * i, "eval/val/acc": v, "eval/ood/acc": o, "eval/macro/acc": 0}
                                      for i, (v, o) in enumerate(zip(val, ood, strict=True))]).root)
    assert run.eval_labels() == ["val", "ood"]
    sat = saturation(run, tol=0.01)
    assert (sat.step, sat.val_acc, sat.best_val_acc, sat.last_step) == (4, 0.795, 0.8, 6)
    assert sat.ood_gain == {"ood": pytest.approx(0.05)}
    assert saturation(run, tol=0.0).step == 6
    assert saturation(load_run(write_run("none", metrics=[{"step": 1, "train/acc": 0}]).root)) is None


def test_subdomain_table(write_run):
    # val/units: step 0 1 of 2 right (0.5), step 2 2 of 2 (1.0), step 4 0 of 2 (0.0) -> best 1.0 at 2, last 0.0
    # val/zoology: 0 of 1, 0 of 1, 1 of 1 -> best = last = 1.0 at step 4
    def rows(units, zoo):
        return ([{"benchmark": "val", "id": f"u{i}", "domain": "physics", "subdomain": "units", "correct": c}
                 for i, c in enumerate(units)]
                + [{"benchmark": "val", "id": "z", "domain": "biology", "subdomain": "zoology", "correct": zoo}])
    run = load_run(write_run(evals={0: rows([True, False], False), 2: rows([True, True], False),
                                    4: rows([False, False], True)}).root)
    table = subdomain_table(run)
    assert table.to_dict("records") == [
        {"benchmark": "val", "subdomain": "zoology", "n": 1, "first": 0.0, "best": 1.0, "best_step": 4, "last": 1.0,
         "best_gain": 1.0, "last_gain": 1.0},
        {"benchmark": "val", "subdomain": "units", "n": 2, "first": 0.5, "best": 1.0, "best_step": 2, "last": 0.0,
         "best_gain": 0.5, "last_gain": -0.5}]


def test_answer_table_shows_a_subdomain_collapsing_onto_one_answer(write_run):
    def row(subdomain, response, correct, domain="chemistry"):
        return {"domain": domain, "subdomain": subdomain, "response": response, "correct": correct,
                "pred": "A" if correct else None}
    run = load_run(write_run(rollouts={
        1: [row("noble gas", " neon", True), row("noble gas", " argon", False), row(None, " 5 m", True, "physics")],
        2: [row("noble gas", " xenon", True)],
        3: [row("noble gas", " neon", False), row("noble gas", " neon", False), row(None, " 5 m", True, "physics"),
            row(None, " 9 km", False, "physics")]}).root)
    # steps=1: first window step 1, last window step 3 (step 2 in neither). noble gas: 1 of 2 right, a tie of
    # one " neon" and one " argon" (alphabetical: argon, share 0.5) -> 0 of 2, " neon" twice (share 1.0);
    # physics (no subdomain: its domain) 1 of 1 -> 1 of 2, tie "5 m" / "9 km" -> "5 m" 0.5. By last share.
    assert answer_table(run, steps=1).to_dict("records") == [
        {"subdomain": "noble gas", "first_n": 2, "first_acc": 0.5, "first_extractable": 0.5,
         "first_top_response": "argon", "first_top_share": 0.5, "last_n": 2, "last_acc": 0.0,
         "last_extractable": 0.0, "last_top_response": "neon", "last_top_share": 1.0},
        {"subdomain": "physics", "first_n": 1, "first_acc": 1.0, "first_extractable": 1.0,
         "first_top_response": "5 m", "first_top_share": 1.0, "last_n": 2, "last_acc": 0.5,
         "last_extractable": 0.5, "last_top_response": "5 m", "last_top_share": 0.5}]
    two = answer_table(run, steps=2, by="domain").set_index("domain")  # steps 1-2 and 2-3
    assert (two.loc["chemistry", "first_n"], two.loc["chemistry", "last_n"]) == (3, 3)
    assert two.loc["chemistry", "last_top_share"] == 2 / 3
    assert answer_table(load_run(write_run("empty", metrics=[{"step": 1}]).root)).empty
    with pytest.raises(ValueError, match="by must be 'subdomain' or 'domain'"):
        answer_table(run, by="template")
