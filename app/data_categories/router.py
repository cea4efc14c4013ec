from fastapi import APIRouter

router = APIRouter(prefix="/v1/data-categories", tags=["data-categories"])
