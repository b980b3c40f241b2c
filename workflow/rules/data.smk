# IWSLT'14 De-En: locate (checkpoint) -> preprocess as fairseq -> binarise, into results/data/<dataset>/.
# Datasets: iwslt14 (the paper's; needs fairseq's training pairs) and iwslt14-mini (stand-in, docs/translation.md).
# Where the raw data is, or why not: never fails. Reruns when the config's data section or
# $SIGPROP_IWSLT_DIR change; a status "not available" is removed at the end of the run
# (onsuccess/onerror), so the next run looks again.
checkpoint iwslt_status:
    input:
        code_inputs("iwslt_status"),
    output:
        "results/data/{dataset}/status.json",
    log:
        "results/logs/data/{dataset}/status.log",
    benchmark:
        "results/benchmarks/data/{dataset}/status.tsv"
    conda:
        "../../envs/sigprop.yaml"
    params:
        local_dir=DATA["local_dir"] or "",
        env_dir=os.environ.get(ENV_VAR, ""),
        url=DATA["url"] or "",
        sha256=DATA["sha256"] or "",
        cache_dir=DATA["cache_dir"],
        timeout=DATA["timeout_s"],
    shell:
        "python -m sigprop data-status --dataset {wildcards.dataset} --out {output}"
        " --local-dir={params.local_dir:q} --url={params.url:q} --sha256={params.sha256:q}"
        " --cache-dir={params.cache_dir:q} --timeout={params.timeout} > {log} 2>&1"


rule prepare_iwslt:
    input:
        code_inputs("prepare_iwslt"),
        status="results/data/{dataset}/status.json",
    output:
        multiext(
            "results/data/{dataset}/",
            *(f"{s}.{l}" for s in ("train", "valid", "test") for l in ("de", "en")),
        ),
        manifest="results/data/{dataset}/manifest.json",
    log:
        "results/logs/data/{dataset}/prepare.log",
    benchmark:
        "results/benchmarks/data/{dataset}/prepare.tsv"
    conda:
        "../../envs/sigprop.yaml"
    resources:
        runtime=60,
        mem_mb=4000,
    shell:
        "python -m sigprop data-prepare --status {input.status} --out results/data/{wildcards.dataset}"
        " > {log} 2>&1"


rule binarize_iwslt:
    input:
        code_inputs("binarize_iwslt"),
        rules.prepare_iwslt.output,
    output:
        multiext(
            "results/data/{dataset}/",
            "dict.txt",
            "train.pt",
            "valid.pt",
            "test.pt",
            "binarize.json",
        ),
    log:
        "results/logs/data/{dataset}/binarize.log",
    benchmark:
        "results/benchmarks/data/{dataset}/binarize.tsv"
    conda:
        "../../envs/sigprop.yaml"
    shell:
        "python -m sigprop data-binarize --dir results/data/{wildcards.dataset} > {log} 2>&1"
