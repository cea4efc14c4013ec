from fastapi import APIRouter

router = APIRouter(prefix="/v1/retention-rules", tags=["retention-rules"])
