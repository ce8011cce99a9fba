#!/usr/bin/env python3
"""The Python client from seed 000 (the integration guide), verbatim, driven against
a running imgidx API: `seed000_client.py BASE_URL IMAGE...`. Exits non-zero unless the
job completes and a resubmission reports every image already indexed."""
import requests
import time
from typing import List, Dict, Optional


class ImageIndexAPI:
    """Client for the Image Indexing API."""

    def __init__(self, base_url: str = "http://duc17-40g.eng.qumulo.com:8000"):
        self.base_url = base_url.rstrip('/')

    def add_images(self, image_paths: List[str], priority: str = "normal") -> Dict:
        """
        Submit new images for indexing.

        Args:
            image_paths: List of absolute paths on NFS mount
            priority: "low", "normal", or "high"

        Returns:
            Response dict with job_id and status
        """
        response = requests.post(
            f"{self.base_url}/api/v1/index/add-images",
            json={
                "image_paths": image_paths,
                "priority": priority
            }
        )
        response.raise_for_status()
        return response.json()

    def get_job_status(self, job_id: str) -> Dict:
        """Get status of a specific job."""
        response = requests.get(
            f"{self.base_url}/api/v1/index/status/{job_id}"
        )
        response.raise_for_status()
        return response.json()

    def get_index_stats(self) -> Dict:
        """Get current index statistics."""
        response = requests.get(
            f"{self.base_url}/api/v1/index/stats"
        )
        response.raise_for_status()
        return response.json()

    def get_overall_status(self) -> Dict:
        """Get overall system status."""
        response = requests.get(
            f"{self.base_url}/api/v1/index/status"
        )
        response.raise_for_status()
        return response.json()

    def wait_for_job(
        self,
        job_id: str,
        poll_interval: int = 5,
        timeout: int = 3600,
        progress_callback: Optional[callable] = None
    ) -> Dict:
        """
        Wait for a job to complete.

        Args:
            job_id: Job ID to monitor
            poll_interval: Seconds between checks
            timeout: Maximum seconds to wait
            progress_callback: Function called with progress dict

        Returns:
            Final job status dict
        """
        start_time = time.time()

        while True:
            if time.time() - start_time > timeout:
                raise TimeoutError(f"Job {job_id} exceeded timeout of {timeout}s")

            status = self.get_job_status(job_id)

            # Call progress callback if provided
            if progress_callback and status.get("progress"):
                progress_callback(status["progress"])

            # Check if job is done
            if status["status"] in ["completed", "failed"]:
                return status

            time.sleep(poll_interval)



def run(base_url, paths):
    api = ImageIndexAPI(base_url)
    before = api.get_index_stats()["total_images"]
    result = api.add_images(paths, priority="high")
    print(result)
    if result["job_id"] != "none":
        final = api.wait_for_job(result["job_id"], poll_interval=1, timeout=600,
                                 progress_callback=lambda p: print("progress", p))
        print(final)
        assert final["status"] == "completed", final
    again = api.add_images(paths)
    print(again)
    assert again["job_id"] == "none" and again["already_indexed_count"] == len(set(paths)), again
    stats = api.get_index_stats()
    print(stats)
    assert stats["total_images"] >= before
    print(api.get_overall_status())


if __name__ == "__main__":
    import sys
    run(sys.argv[1], sys.argv[2:])
