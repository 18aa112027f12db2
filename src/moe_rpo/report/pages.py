"""What each report page shows. Every file named here is produced by a pipeline rule."""
from __future__ import annotations

PAGES = [
    {
        "slug": "toy_routing",
        "experiment": "routing",
        "title": "Toy 1: routing trajectories",
        "summary": ("Eight fixed 2-D experts and a target (red star). Only the router trains, for every "
                    "method with K=1 and K=2; the figure draws the MoE output after every step (white to blue). "
                    "The exact K-optimum comes from enumerating expert subsets with least-squares weights; "
                    "'standard reachable' is the best point when the weights are the softmax probabilities."),
        "figures": ["toy_routing_trajectories", "toy_routing_final_distance"],
        "tables": ["toy_routing_summary", "toy_routing_optima"],
    },
    {
        "slug": "toy_collapse",
        "experiment": "collapse",
        "title": "Toy 2: expert collapse",
        "summary": ("2-D regression with one input cluster per expert; each expert (a 2-D weight vector) starts "
                    "at its cluster's optimal solution (dashed circle). Router and experts train: jointly "
                    "(standard) or by E/M alternation (RPO), with and without weight decay on the router."),
        "figures": ["toy_collapse_positions", "toy_collapse_metrics"],
        "tables": ["toy_collapse_summary"],
    },
    {
        "slug": "toy_dilemma",
        "experiment": "dilemma",
        "title": "Toy 3: expert weighting dilemma",
        "summary": ("The target needs much of expert A and little of expert B. With weights equal to router "
                    "probabilities, one number decides both selection and contribution, so the weights stay on "
                    "the probability simplex; RPO's separate weight policy is free."),
        "figures": ["toy_dilemma_weights"],
        "tables": ["toy_dilemma_summary"],
    },
    {
        "slug": "toy_barrier",
        "experiment": "barrier",
        "title": "Toy 4: monotonicity barrier",
        "summary": ("Two fixed experts feed a frozen non-linear readout; expert B is optimal, A nearly as good, "
                    "their blends are bad. Gradient routing follows the blend and stops in the local minimum at A; "
                    "RPO optimises the expected loss over discrete selections, which is linear in the routing "
                    "probability."),
        "figures": ["toy_barrier_landscape"],
        "tables": ["toy_barrier_summary"],
    },
    {
        "slug": "lm_recovery",
        "experiment": "recovery",
        "title": "GPT-2 optimal routing recovery (DIFF / SIM)",
        "summary": ("Every chosen MLP of the dense base model becomes an MoE layer of 4 experts: expert 0 is the "
                    "pretrained MLP, experts 1-3 are distractors, either randomly initialised (DIFF) or the "
                    "pretrained weights plus Gaussian noise of relative size 'scale' (SIM). Experts and the rest "
                    "of the model are frozen; only the routers train. Routing accuracy is the share of validation "
                    "tokens whose most probable expert is the pretrained one (strictly: ties count as misses), "
                    "averaged over the MoE layers; the validation loss is compared with the dense base model on "
                    "the same windows."),
        "figures": ["lm_recovery_diff", "lm_recovery_sim", "lm_recovery_sim_sweep"],
        "tables": ["lm_recovery_summary"],
    },
    {
        "slug": "lm_shakespeare_moe",
        "experiment": "shakespeare_moe",
        "title": "Shakespeare MoE: RPO vs top-1 vs top-2 vs EM",
        "summary": ("nanoGPT-style GPTs whose every MLP is an MoE layer, trained from scratch on Shakespeare "
                    "characters; routers, experts and the rest train together (RPO and EM by E/M alternation). "
                    "The curves show the paper's four methods; the final-loss figure and the table every router "
                    "of the benchmark. Final losses are measured on the same fixed windows of both splits."),
        "figures": ["lm_shakespeare_moe_curves", "lm_shakespeare_moe_final"],
        "tables": ["lm_shakespeare_moe_summary"],
    },
    {
        "slug": "lm_pretraining",
        "experiment": "pretraining",
        "title": "Pretraining from scratch: dense vs MoE vs MoE + RPO",
        "summary": ("A dense GPT against MoE GPTs (k=2 of 4 experts per MLP) with the standard router and with "
                    "RPO, at the same active size and on the same batches. The paper trained GPT-2 124M on "
                    "TinyStories (config/paper.yaml); the default config runs a small version on Shakespeare."),
        "figures": ["lm_pretraining_curves", "lm_pretraining_final"],
        "tables": ["lm_pretraining_summary"],
    },
    {
        "slug": "lm_routerless",
        "experiment": "routerless",
        "title": "Routerless routing: fixed routers against learned ones",
        "summary": ("Fixed routers (hashing token ids, or a frozen random projection) with trainable experts, "
                    "against learned routers at the same budget (the same Shakespeare MoE runs). Does the loss "
                    "alone reveal whether routing was learned? Next to the loss: the loss increase when every "
                    "token is sent to other experts with the same weights (how much the model relies on its "
                    "routing), load balance and router entropy."),
        "figures": ["lm_routerless"],
        "tables": ["lm_routerless_summary"],
    },
    {
        "slug": "lm_benchmark",
        "experiment": "benchmark",
        "title": "Router benchmark",
        "summary": ("Every router of the survey behind one interface, in three experiments: toy 1's gap to the "
                    "exact K-optimum (config seeds), routing recovery (DIFF and SIM accuracy; the benchmark's "
                    "own recovery jobs), and Shakespeare MoE training (train and validation loss, load balance: "
                    "E x the largest expert's load, 1 = balanced). Cells: median [min, max] over seeds."),
        "figures": ["lm_benchmark"],
        "tables": ["lm_benchmark"],
    },
]
