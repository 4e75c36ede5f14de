"""HTTP service: recommendations under experiments, event ingestion, admin, results, metrics.

Entry points: `abrec.serve.config.ServeConfig`, `abrec.serve.app.create_app`,
`abrec.serve.runner.ServiceThread` and the `abrec serve --config ...` command.
"""
