"""Where every file of the pipeline lives, defined once: the rules' outputs, the experiments' job records,
the tables and figures they write and the report's inputs are all formatted from these templates.
Templates are relative to the results directory; their {fields} are Snakemake wildcards in the rules."""
from __future__ import annotations

RESULTS = "results"

# A job writes its record at RECORD.json (toys also RECORD.npz); its log and Snakemake benchmark are named by
# its key: logs/KEY.log, benchmarks/KEY.tsv.
TOY_RUN = {"record": "toy/{experiment}/run", "key": "toy_{experiment}/run"}  # every seed of a toy in one job
RECOVERY_RUN = {"record": "lm/recovery/{setting}/{method}/seed{seed}", "key": "lm_recovery/{setting}/{method}/seed{seed}"}
RECOVERY_LAYERS_RUN = {"record": "lm/recovery_layers/{layers}/{setting}/{method}/seed{seed}",
                       "key": "lm_recovery_layers/{layers}/{setting}/{method}/seed{seed}"}
RECOVERY_DESIGN = {"record": "lm/recovery_design/seed{seed}", "key": "lm_recovery_design/seed{seed}"}
TRAIN_RUN = {"record": "lm/{training}/{method}/seed{seed}", "key": "lm_{training}/{method}/seed{seed}"}
READING_RUN = {"record": "lm/{training}/readings/{reading}/{method}/seed{seed}",  # claims.readings
               "key": "lm_{training}/readings/{reading}/{method}/seed{seed}"}
BASE_MODEL = {"record": "lm/base/model", "key": "lm_base/base_model"}  # the model: lm/base/model.pt

CORPUS = "data/{corpus}"  # train.bin, val.bin, meta.json; shards/ while it is prepared
CORPUS_INVENTORY = {"record": "data/{corpus}/inventory", "key": "data_{corpus}/inventory"}  # its documents counted
TABLE = "tables/{table}.csv"
FIGURE = "figures/{figure}.{ext}"
FIGURE_FORMATS = ("png", "pdf")
CLAIMS = "claims.json"
REPORT_PAGE = "report/{page}.html"
LOG = "logs/{key}.log"
BENCHMARK = "benchmarks/{key}.tsv"
TENSORBOARD = "tensorboard/{key}"  # a training job's TensorBoard events


def result(template: str, **fields) -> str:
    """A path under results/: the template with the given fields filled (the others stay wildcards)."""
    return f"{RESULTS}/{template.format_map(_Keep(fields))}"


class _Keep(dict):
    """Format fields that are not given stay as {field}, for Snakemake to fill."""

    def __missing__(self, field):
        return "{" + field + "}"


def table(name: str) -> str:
    return result(TABLE, table=name)


def figures(name: str) -> list[str]:
    """The PNG and PDF files of one figure."""
    return [result(FIGURE, figure=name, ext=ext) for ext in FIGURE_FORMATS]


def record(run: dict, suffix: str = ".json", **fields) -> str:
    """A job's record (or, with suffix .npz, a toy's arrays), e.g. record(TOY_RUN, experiment="routing")."""
    return result(run["record"] + suffix, **fields)


def log(key: str, **fields) -> str:
    return result(LOG, key=key.format_map(_Keep(fields)))


def benchmark(key: str, **fields) -> str:
    return result(BENCHMARK, key=key.format_map(_Keep(fields)))


def tensorboard(key: str, **fields) -> str:
    return result(TENSORBOARD, key=key.format_map(_Keep(fields)))


def report_page(page: str) -> str:
    return result(REPORT_PAGE, page=page)
