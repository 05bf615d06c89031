// moekit run's recipe parser, planner and metric lookup (pipeline/recipe.h, pipeline/pipeline.h):
// valid recipes become the arguments the subcommands take; malformed ones fail naming the
// file, line and key.
#include <gtest/gtest.h>

#include "core/error.h"
#include "pipeline/pipeline.h"
#include "pipeline/recipe.h"
#include "test_util.h"

namespace moekit::pipeline {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

Recipe parse_text(const TempDir& dir, const std::string& text, const std::string& name = "r.yaml") {
    test::write_all(dir / name, text);
    return parse_recipe(dir / name);
}

// The message of the Error parse_recipe throws ("" when it does not).
std::string error_of(const TempDir& dir, const std::string& text, const std::string& name = "bad.yaml") {
    try {
        parse_text(dir, text, name);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(PipelineRecipe, ParsesStepsOptionsAndAsserts) {
    TempDir dir("recipe");
    const Recipe r = parse_text(dir,
                                "name: demo\n"
                                "model: m\n"
                                "calib: {en: c/en.txt, code: /abs/code.py}\n"
                                "data: [e/a.txt, e/b.txt]\n"
                                "corpus: {seq_len: 64, max_tokens: 100}\n"
                                "steps:\n"
                                "  - prune: {method: reap, keep: 0.75, protect_super_experts: false}\n"
                                "  - prune:\n"
                                "      keep: 0.5\n"
                                "      input: model\n"
                                "      dry_run: true\n"
                                "  - eval:\n"
                                "      name: final\n"
                                "      assert: [ppl_ratio <= 1.05, 'kl_mean<0.5']\n"
                                "assert:\n"
                                "  - final.ppl >= 1\n");
    EXPECT_EQ(r.name, "demo");
    EXPECT_EQ(r.model, (dir.path() / "m").lexically_normal());
    EXPECT_EQ(*r.calib, "en=" + (dir.path() / "c/en.txt").string() + ",code=/abs/code.py");
    EXPECT_EQ(*r.data, (dir.path() / "e/a.txt").string() + "," + (dir.path() / "e/b.txt").string());
    ASSERT_EQ(r.corpus.size(), 2u);
    EXPECT_EQ(r.corpus[0].args, (std::vector<std::string>{"--seq-len", "64"}));
    ASSERT_EQ(r.steps.size(), 3u);
    EXPECT_EQ(r.steps[0].name, "prune");
    EXPECT_EQ(r.steps[1].name, "prune-2");
    EXPECT_EQ(r.steps[2].name, "final");
    EXPECT_EQ(r.steps[0].options[2].args, (std::vector<std::string>{"--protect-super-experts=false"}));
    EXPECT_EQ(r.steps[1].options[1].args, (std::vector<std::string>{"--dry-run"}));
    EXPECT_EQ(r.steps[1].options[0].line, 9);
    EXPECT_EQ(*r.steps[1].input, "model");
    ASSERT_EQ(r.steps[2].asserts.size(), 2u);
    EXPECT_EQ(r.steps[2].asserts[1].metric, "kl_mean");
    EXPECT_EQ(r.steps[2].asserts[1].op, "<");
    EXPECT_DOUBLE_EQ(r.steps[2].asserts[0].value, 1.05);
    EXPECT_EQ(r.asserts[0].line, 16);
}

TEST(PipelineRecipe, JsonRecipesUseTheSameParser) {
    TempDir dir("recipe");
    const Recipe r = parse_text(dir, R"({"model": "m", "steps": [{"prune": {"keep": 8}}, {"eval": {"data": "x.txt"}}]})", "r.json");
    EXPECT_EQ(r.name, "r");
    ASSERT_EQ(r.steps.size(), 2u);
    EXPECT_EQ(r.steps[0].options[0].args, (std::vector<std::string>{"--keep", "8"}));
}

TEST(PipelineRecipe, MalformedRecipesNameTheLineAndKey) {
    TempDir dir("recipe");
    const std::string f = (dir / "bad.yaml").string();
    EXPECT_NE(error_of(dir, "model: m\nsteps:\n  - prune: {keep: 0.5\n").find(f + ":"), std::string::npos);
    std::string e = error_of(dir, "model: m\nsteps:\n  - prune: {keep: 0.5}\n  - squash: {}\n");
    EXPECT_NE(e.find(f + ":4:"), std::string::npos) << e;
    EXPECT_NE(e.find("squash"), std::string::npos) << e;
    e = error_of(dir, "model: m\nsteps:\n  - prune:\n      keep: 0.5\n      output: x\n");
    EXPECT_NE(e.find(f + ":5:"), std::string::npos) << e;
    EXPECT_NE(e.find("'output'"), std::string::npos) << e;
    e = error_of(dir, "model: m\nstep:\n  - prune: {}\n");
    EXPECT_NE(e.find(f + ":2:"), std::string::npos) << e;
    EXPECT_NE(e.find("unknown key 'step'"), std::string::npos) << e;
    e = error_of(dir, "model: m\nsteps:\n  - eval:\n      assert: [ppl_ratio <= lots]\n");
    EXPECT_NE(e.find(f + ":4:"), std::string::npos) << e;
    EXPECT_NE(e.find("not a number"), std::string::npos) << e;
    e = error_of(dir, "model: m\nsteps:\n  - prune: {}\nassert:\n  - nostep.ppl < 2\n");
    EXPECT_NE(e.find(f + ":5:"), std::string::npos) << e;
    e = error_of(dir, "steps:\n  - prune: {}\n");
    EXPECT_NE(e.find("missing 'model'"), std::string::npos) << e;
    e = error_of(dir, "model: m\nsteps:\n  - prune: {}\n  - prune: {}\n  - prune: {name: prune-2}\n");
    EXPECT_NE(e.find(f + ":5:"), std::string::npos) << e;
    EXPECT_NE(e.find("two steps are named 'prune-2'"), std::string::npos) << e;
    e = error_of(dir, "model: m\ncorpus: {keep: 1}\nsteps:\n  - prune: {}\n");
    EXPECT_NE(e.find(f + ":2:"), std::string::npos) << e;
    EXPECT_NE(error_of(dir, "").find("a recipe is a mapping"), std::string::npos);
    try {
        parse_recipe(dir / "missing.yaml");
        ADD_FAILURE() << "a missing recipe parsed";
    } catch (const Error& err) {
        EXPECT_NE(std::string(err.what()).find("does not exist"), std::string::npos);
    }
}

TEST(PipelineRecipe, AssertionsCompare) {
    const Assertion a = parse_assertion("x.y >= 2.5", 3, "f:3");
    EXPECT_EQ(a.metric, "x.y");
    EXPECT_TRUE(a.holds(2.5));
    EXPECT_FALSE(a.holds(2.4));
    EXPECT_FALSE(a.holds(std::nan("")));
    EXPECT_TRUE(parse_assertion("m != 1", 1, "f").holds(2));
    EXPECT_TRUE(parse_assertion("ok == true", 1, "f").holds(1));
    EXPECT_THROW(parse_assertion("m 3", 1, "f"), Error);
    EXPECT_THROW(parse_assertion("<= 3", 1, "f"), Error);
    EXPECT_THROW(parse_assertion("a b <= 3", 1, "f"), Error);
}

TEST(PipelinePlan, ChainsModelsAndFillsDefaults) {
    TempDir dir("recipe");
    const Recipe r = parse_text(dir,
                                "name: p\nmodel: m\ncalib: c.txt\ndata: e.txt\ncorpus: {seq_len: 32}\n"
                                "steps:\n"
                                "  - profile: {}\n"
                                "  - prune: {keep: 0.75}\n"
                                "  - merge: {experts: 4, seq_len: 16}\n"
                                "  - quantize: {type: q8_0}\n"
                                "  - quantize: {format: hf-fake, input: prune}\n"
                                "  - eval: {}\n"
                                "  - eval: {input: model, name: base}\n");
    RunOptions o;
    o.runs_dir = dir / "runs";
    o.threads = 2;
    const auto steps = plan(r, o);
    ASSERT_EQ(steps.size(), 7u);
    const fs::path run_dir = dir / "runs" / "p";
    const std::string m = (dir.path() / "m").string(), c = (dir.path() / "c.txt").string(), e = (dir.path() / "e.txt").string();
    EXPECT_EQ(steps[0].args, (std::vector<std::string>{m, "--data", c, "--seq-len", "32", "-o", (run_dir / "profile").string(),
                                                        "--force", "--threads", "2"}));
    EXPECT_EQ(steps[1].input, fs::path(m));
    EXPECT_TRUE(steps[1].output_is_model);
    EXPECT_EQ(steps[2].input, run_dir / "prune");
    // The step's own seq_len wins over the recipe's corpus flags.
    EXPECT_EQ(steps[2].args, (std::vector<std::string>{(run_dir / "prune").string(), "--experts", "4", "--seq-len", "16", "--calib", c,
                                                        "-o", (run_dir / "merge").string(), "--force", "--threads", "2"}));
    EXPECT_EQ(steps[3].output, run_dir / "quantize.gguf");
    EXPECT_FALSE(steps[3].output_is_model);
    EXPECT_EQ(steps[3].input, run_dir / "merge");
    // RTN needs no calibration data and gets none.
    EXPECT_EQ(std::count(steps[3].args.begin(), steps[3].args.end(), "--calib"), 0);
    EXPECT_EQ(steps[4].input, run_dir / "prune");
    EXPECT_TRUE(steps[4].output_is_model);
    // eval reads the latest checkpoint (the hf-fake one) against the original model.
    EXPECT_EQ(steps[5].input, run_dir / "quantize-2");
    EXPECT_EQ(*steps[5].ref, fs::path(m));
    EXPECT_EQ(steps[5].args[1], "--data");
    EXPECT_EQ(steps[5].args[2], e);
    EXPECT_FALSE(steps[6].ref.has_value());
    EXPECT_TRUE(steps[6].output.empty());
    // An option's recipe line is found from an error message naming its flag.
    EXPECT_EQ(steps[2].line_for("--seq-len: bad"), 9);
    EXPECT_EQ(steps[2].line_for("something else"), steps[2].step->line);
}

TEST(PipelinePlan, RefusesReadingACheckpointFromAStepThatWritesNone) {
    TempDir dir("recipe");
    const Recipe r = parse_text(dir, "model: m\ndata: e.txt\nsteps:\n  - eval: {}\n  - prune: {keep: 2, input: eval}\n");
    EXPECT_THROW(plan(r, RunOptions{}), Error);
}

TEST(PipelineMetrics, LooksUpMetricsThenReportPaths) {
    const nlohmann::ordered_json rec = {
        {"metrics", {{"ppl_ratio", 1.02}}},
        {"report", {{"total", {{"ppl", 30.5}}}, {"layers", {{{"kept", 3}}, {{"kept", 4}}}}, {"ok", true}}},
        {"timing", {{"wall_s", 2.0}}}};
    EXPECT_DOUBLE_EQ(*lookup_metric(rec, "ppl_ratio"), 1.02);
    EXPECT_DOUBLE_EQ(*lookup_metric(rec, "total.ppl"), 30.5);
    EXPECT_DOUBLE_EQ(*lookup_metric(rec, "layers.1.kept"), 4);
    EXPECT_DOUBLE_EQ(*lookup_metric(rec, "ok"), 1);
    EXPECT_DOUBLE_EQ(*lookup_metric(rec, "timing.wall_s"), 2.0);
    EXPECT_FALSE(lookup_metric(rec, "layers.7.kept").has_value());
    EXPECT_FALSE(lookup_metric(rec, "total").has_value());
}

}  // namespace
}  // namespace moekit::pipeline
