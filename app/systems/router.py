from fastapi import APIRouter

router = APIRouter(prefix="/v1/systems", tags=["systems"])
