"""Releases (request, approve, reject), tags and channels, and pull by tag."""
from __future__ import annotations

from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from registry import publishing, pulls, release_policy
from registry import review as evidence
from registry.api import schema, serializers
from registry.api.filters import ReleaseFilter
from registry.api.errors import error
from registry.api.permissions import IsApprover, ReadOnlyOrApprover
from registry.models import Release, Tag


@schema.releases
class ReleaseViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Release.objects.select_related("variant__checkpoint", "variant__recipe", "requested_by",
                                              "decided_by")
    serializer_class = serializers.ReleaseSerializer
    filterset_class = ReleaseFilter

    def create(self, request, *args, **kwargs):
        data = serializers.ReleaseRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        release = Release.request(data.validated_data["variant"], request.user, data.validated_data.get("notes", ""))
        return Response(self.get_serializer(release).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"], permission_classes=[IsApprover],
            serializer_class=serializers.ApprovalSerializer)
    def approve(self, request, pk=None):
        release = self.get_object()
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            publishing.approve(release, request.user, data.validated_data.get("reason", ""),
                               data.validated_data.get("override", ""))
        except release_policy.PolicyRefusal as refusal:
            return Response({"error": refusal.messages[0], "status": status.HTTP_409_CONFLICT,
                             "verdict": refusal.verdict.to_json()}, status=status.HTTP_409_CONFLICT)
        return Response(serializers.ReleaseSerializer(release).data)

    @action(detail=True, methods=["get"], serializer_class=serializers.EvidenceSerializer)
    def evidence(self, request, pk=None):
        """What the approver decides on: the drop against the reference, the policy verdict, the siblings."""
        return Response(self.get_serializer(evidence.of(self.get_object())).data)

    @action(detail=True, methods=["post"], permission_classes=[IsApprover],
            serializer_class=serializers.DecisionSerializer)
    def reject(self, request, pk=None):
        release = self.get_object()
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        release.reject(request.user, data.validated_data.get("reason", ""))
        return Response(serializers.ReleaseSerializer(release).data)


    @action(detail=True, methods=["post"], permission_classes=[IsApprover])
    def publish(self, request, pk=None):
        """Send an approved release to the Hub (again): publishing is idempotent, so a re-send is safe."""
        release = self.get_object()
        if release.state not in (Release.State.APPROVED, Release.State.PUBLISHED):
            return error(f"release {release} is {release.state}: only approved releases are published",
                         status.HTTP_409_CONFLICT)
        publishing.publish(release)
        return Response(serializers.ReleaseSerializer(release).data, status=status.HTTP_202_ACCEPTED)


@schema.tags
class TagViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Version tags are made by approval and never move; channels are created and moved by approvers."""

    queryset = Tag.objects.select_related("checkpoint", "release", "updated_by").prefetch_related(
        "moves__moved_by", "moves__from_release", "moves__to_release")
    serializer_class = serializers.TagSerializer
    permission_classes = [ReadOnlyOrApprover]
    filterset_fields = ["checkpoint__name", "quant", "kind", "name"]

    def create(self, request, *args, **kwargs):
        """Create a channel (or move an existing one) to a release: {checkpoint, quant, name, release}."""
        data = serializers.ChannelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        tag = Tag.channel(v["checkpoint"], v["quant"], v["name"])
        created = tag.pk is None
        tag.move(v["release"], request.user)
        return Response(self.get_serializer(tag).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @action(detail=True, methods=["post"], serializer_class=serializers.MoveSerializer)
    def move(self, request, pk=None):
        tag = self.get_object()
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        tag.move(data.validated_data["release"], request.user)
        return Response(serializers.TagSerializer(Tag.objects.get(pk=tag.pk)).data)


@schema.pull
@api_view(["GET"])
@permission_classes([AllowAny])
def pull(request, ref: str):
    """GET /api/pull/<model>:<quant>@<tag>: the exact files, their URLs and commands to run them."""
    try:
        parsed = pulls.parse_ref(ref)
    except ValueError as exc:
        return error(str(exc))
    release = pulls.resolve(parsed)
    return Response(pulls.manifest(parsed, release, request))
