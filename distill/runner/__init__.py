"""`distillery run RECIPE.yaml`: the stages a recipe lists, in order, each into
`runs/<name>/<stage>/`, finished stages skipped and a stopped one resumed.

    plan = make_plan("recipes/quickstart.yaml", ["pretrain.teacher.train.max_steps=50"])
    execute(plan)                         # or execute(plan, only=["eval"]) / start="sft"

registry.py: the stage table (how to add a stage kind); plan.py: the recipe format, wiring and
every check made before anything runs; execute.py: skip / resume / rerun, progress and summary;
state.py: the per-stage records; synth.py, report.py: the two stages that exist only here;
adapters.py: how each stage's entry point is called.
"""

from distill.runner.execute import describe, execute, select
from distill.runner.plan import Plan, make_plan
from distill.runner.registry import STAGES, Output, StageContext, StageType

__all__ = ["STAGES", "Output", "Plan", "StageContext", "StageType", "describe", "execute",
           "make_plan", "select"]
