from fastapi import APIRouter

router = APIRouter(prefix="/v1/legal-holds", tags=["legal-holds"])
