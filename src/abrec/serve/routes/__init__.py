"""The service's routers, one module per concern; `abrec.serve.app.create_app` wires them."""

from abrec.serve.routes.admin import router as admin_router
from abrec.serve.routes.events import router as events_router
from abrec.serve.routes.experiments import router as experiments_router
from abrec.serve.routes.models import router as models_router
from abrec.serve.routes.ops import router as ops_router
from abrec.serve.routes.recommend import router as recommend_router
from abrec.serve.routes.ui import router as ui_router

#: In the order their paths appear in the OpenAPI document.
ROUTERS = (
    recommend_router,
    events_router,
    experiments_router,
    admin_router,
    models_router,
    ops_router,
    ui_router,
)

__all__ = ["ROUTERS"]
